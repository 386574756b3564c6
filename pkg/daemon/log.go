package daemon

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/kardianos/service"

	"github.com/edge-enroll/enroll/pkg/logging"
	"github.com/edge-enroll/enroll/pkg/privatedir"
)

// ServiceLog returns, for a process the Windows service manager started, a
// logger that writes JSON lines to <dir>/<name>.log and copies errors to the
// Windows Event Log. Elsewhere it returns a nil logger: systemd's journal
// and SysV's log files take stderr as it is.
func ServiceLog(sp Spec, dir string, opts *slog.HandlerOptions) (*slog.Logger, io.Closer, error) {
	if runtime.GOOS != "windows" || !UnderManager() {
		return nil, nil, nil
	}
	if err := privatedir.Make(dir, 0o700); err != nil {
		return nil, nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, sp.Name+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, err
	}
	s, err := service.New(&program{}, sp.config())
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	events, err := s.SystemLogger(nil)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	opts.ReplaceAttr = logging.ReadableDurations
	return slog.New(slog.NewMultiHandler(slog.NewJSONHandler(f, opts), &errorEvents{to: events})), f, nil
}

// errorEvents copies error records to the system's event log.
type errorEvents struct {
	to    service.Logger
	attrs []slog.Attr
}

func (h *errorEvents) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelError }

func (h *errorEvents) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	write := func(a slog.Attr) bool { fmt.Fprintf(&b, " %s=%v", a.Key, a.Value); return true }
	for _, a := range h.attrs {
		write(a)
	}
	r.Attrs(write)
	return h.to.Error(b.String())
}

func (h *errorEvents) WithAttrs(as []slog.Attr) slog.Handler {
	return &errorEvents{to: h.to, attrs: append(append([]slog.Attr(nil), h.attrs...), as...)}
}

func (h *errorEvents) WithGroup(string) slog.Handler { return h }
