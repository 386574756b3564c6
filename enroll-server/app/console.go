package app

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/console"
	"github.com/edge-enroll/enroll/enroll-server/httpapi"
)

// newConsole builds the fleet console on console.listen, over the same
// admin service as the admin API; nil, nil without console.listen.
func newConsole(cfg config.File, adm *admin.Service, fleets []string, tlsCfg *tls.Config, log *slog.Logger) (*http.Server, net.Listener, error) {
	if cfg.Console.Listen == "" {
		return nil, nil, nil
	}
	con, err := console.New(adm, fleets, cfg.Console.AuthMount, log)
	if err != nil {
		return nil, nil, err
	}
	ln, err := net.Listen("tcp", cfg.Console.Listen)
	if err != nil {
		return nil, nil, fmt.Errorf("listen (console.listen): %w", err)
	}
	srv := &http.Server{
		Handler:           httpapi.NewConsole(con, log),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return srv, ln, nil
}

// ConsoleAddr is the address the console is served on; nil without
// console.listen.
func (a *App) ConsoleAddr() net.Addr {
	if a.consoleListener == nil {
		return nil
	}
	return a.consoleListener.Addr()
}

// serveConsole serves the console until Shutdown.
func (a *App) serveConsole() error {
	a.log.Info("serving the fleet console", "addr", a.consoleListener.Addr().String(), "tls", a.tls)
	var err error
	if a.tls {
		err = a.console.ServeTLS(a.consoleListener, "", "")
	} else {
		err = a.console.Serve(a.consoleListener)
	}
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}
