package app

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/pkg/logging"
)

// Reloaded says what a reload changed in the running server, and which
// changes wait for a restart.
type Reloaded struct {
	Applied     []string
	NeedRestart []string
}

// Reload applies cfg to the running server: the TLS certificate and key
// (read again even when their paths are the same: a renewal), the log
// level, and each fleet's settings. What cannot change live (addresses,
// Vault, the store, the set of fleets, admission limits other than the
// window) is reported as needing a restart and left as it runs. A
// configuration that fails any check run makes is refused whole, and the
// server keeps running as it was.
func (a *App) Reload(cfg config.File) (Reloaded, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	f, err := readFiles(cfg, a.opts)
	if err != nil {
		return Reloaded{}, err
	}
	var r Reloaded
	if f.cert != nil && a.cert != nil {
		old, now := a.cert.cur.Load(), f.cert.cur.Load()
		if !bytes.Equal(old.Certificate[0], now.Certificate[0]) {
			a.cert.replace(f.cert)
			r.Applied = append(r.Applied, fmt.Sprintf("tls certificate (%s, valid until %s)",
				cfg.TLS.CertFile, now.Leaf.NotAfter.UTC().Format(time.RFC3339)))
		}
	}
	if cfg.Log.Level != a.cfg.Log.Level {
		lv, _ := logging.ParseLevel(cfg.Log.Level) // validated by config.Load
		if a.opts.LogLevel != nil {
			a.opts.LogLevel.Set(lv)
			r.Applied = append(r.Applied, "log.level "+cfg.Log.Level)
		} else {
			r.NeedRestart = append(r.NeedRestart, "log.level")
		}
	}
	slow, err := a.core.SetFleets(f.fleets)
	if err != nil {
		r.NeedRestart = append(r.NeedRestart, "fleets: "+err.Error())
	} else {
		for _, name := range changedFleets(a.cfg.Fleets, cfg.Fleets) {
			r.Applied = append(r.Applied, "fleets["+name+"]")
		}
		for _, name := range slow {
			r.NeedRestart = append(r.NeedRestart, "fleets["+name+"] rate_limit, rate_burst, max_concurrent, max_sessions_per_source")
		}
	}
	r.NeedRestart = append(r.NeedRestart, restartOnly(a.started, cfg)...)
	next := cfg
	if err != nil {
		next.Fleets = a.cfg.Fleets
	}
	a.cfg = next
	return r, nil
}

// changedFleets names the fleets whose settings differ.
func changedFleets(old, now []config.Fleet) []string {
	was := make(map[string]config.Fleet, len(old))
	for _, f := range old {
		was[f.Name] = f
	}
	var out []string
	for _, f := range now {
		if o, ok := was[f.Name]; ok && !reflect.DeepEqual(o, f) {
			out = append(out, f.Name)
		}
	}
	return out
}

// restartOnly lists the keys whose new values take effect only at the
// next start.
func restartOnly(started, cfg config.File) []string {
	var out []string
	diff := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			out = append(out, key)
		}
	}
	diff("listen", started.Listen, cfg.Listen)
	diff("metrics_listen", started.MetricsListen, cfg.MetricsListen)
	diff("console", started.Console, cfg.Console)
	diff("vault", started.Vault, cfg.Vault)
	diff("state_path", started.StatePath, cfg.StatePath)
	diff("database_url", started.DatabaseURL, cfg.DatabaseURL)
	diff("log.format", started.Log.Format, cfg.Log.Format)
	diff("alerts", started.Alerts, cfg.Alerts)
	diff("audit.key_file", started.Audit.KeyFile, cfg.Audit.KeyFile)
	return out
}

// reloadOnHangup reloads the configuration at each SIGHUP until ctx ends,
// and says what it did.
func (a *App) reloadOnHangup(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			a.reloadFromFile()
		}
	}
}

func (a *App) reloadFromFile() {
	cfg, err := a.opts.ReloadConfig()
	if err == nil {
		var r Reloaded
		if r, err = a.Reload(cfg); err == nil {
			a.log.Info("configuration reloaded", "applied", listOrNone(r.Applied), "needs_restart", listOrNone(r.NeedRestart))
			if len(r.NeedRestart) > 0 {
				a.log.Warn("some changes take effect only after a restart", "keys", strings.Join(r.NeedRestart, "; "))
			}
			return
		}
	}
	a.log.Error("configuration reload refused; still running with the previous configuration", "err", err)
}

func listOrNone(l []string) string {
	if len(l) == 0 {
		return "nothing"
	}
	return strings.Join(l, "; ")
}
