package enrollctl

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/edge-enroll/enroll/pkg/wire"
)

// batchSink keeps a batch's credentials as they arrive, one chunk at a
// time, so that a batch stopped half way keeps everything minted before.
type batchSink interface {
	Write([]wire.BatchItem) error
	Close() error
	Name() string
}

// openBatchSink opens -out (a new owner-only file of JSON lines, or "-"
// for standard output: the only way a wrapping token reaches a terminal)
// or -out-dir (one owner-only file per device).
func openBatchSink(out, dir string, stdout io.Writer) (batchSink, error) {
	switch {
	case dir != "":
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("-out-dir: %w", err)
		}
		return dirSink(dir), nil
	case out == "-":
		return &linesSink{w: stdout, name: "standard output"}, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o700); err != nil {
		return nil, fmt.Errorf("-out: %w", err)
	}
	// Never over an earlier batch's file: its credentials may not have
	// been injected yet.
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if os.IsExist(err) {
		return nil, fmt.Errorf("-out: %s exists (it may hold an earlier batch's credentials): choose a new file", out)
	}
	if err != nil {
		return nil, fmt.Errorf("-out: %w", err)
	}
	return &linesSink{w: f, f: f, name: out}, nil
}

// linesSink writes JSON lines, synced to disk after each chunk.
type linesSink struct {
	w    io.Writer
	f    *os.File // nil for standard output
	name string
}

func (s *linesSink) Write(items []wire.BatchItem) error {
	var buf bytes.Buffer
	for _, it := range items {
		buf.Write(encodeItem(it))
		buf.WriteByte('\n')
	}
	if _, err := s.w.Write(buf.Bytes()); err != nil {
		return err
	}
	if s.f != nil {
		return s.f.Sync()
	}
	return nil
}

func (s *linesSink) Close() error {
	if s.f != nil {
		return s.f.Close()
	}
	return nil
}

func (s *linesSink) Name() string { return s.name }

// dirSink writes <device>.json per device, each replaced atomically.
type dirSink string

func (d dirSink) Write(items []wire.BatchItem) error {
	for _, it := range items {
		raw, err := json.MarshalIndent(it, "", "  ")
		if err != nil {
			return err
		}
		if err := writeOwnerOnly(filepath.Join(string(d), it.DeviceID+".json"), append(raw, '\n')); err != nil {
			return err
		}
	}
	return nil
}

func (d dirSink) Close() error { return nil }
func (d dirSink) Name() string { return string(d) }
