// Package app wires enroll-server's parts together from a validated
// configuration: store, Vault client, enrollment core and HTTP API.
package app

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/attest"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/config"
	"github.com/edge-enroll/enroll/enroll-server/ekfetch"
	"github.com/edge-enroll/enroll/enroll-server/enrollment"
	"github.com/edge-enroll/enroll/enroll-server/httpapi"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/metrics"
	"github.com/edge-enroll/enroll/enroll-server/pgstore"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/enroll-server/webhook"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Options change how the server runs beyond its configuration file.
type Options struct {
	// DevPlainHTTP serves without TLS. For local development only.
	DevPlainHTTP bool
	// LogLevel, when set, is the level of the logger given to New, so a
	// reload can change it.
	LogLevel *slog.LevelVar
	// ReloadConfig, when set, reads the configuration again: the server
	// reloads at SIGHUP (see Reload).
	ReloadConfig func() (config.File, error)
}

// App is a built, not yet running, enrollment server.
type App struct {
	log      *slog.Logger
	store    inventory.Store
	vault    *vault.Server
	srv      *http.Server
	listener net.Listener
	tls      bool
	// metrics serves /metrics on metrics_listen; nil without it.
	metrics         *http.Server
	metricsListener net.Listener
	// console serves the fleet console on console.listen; nil without it.
	console         *http.Server
	consoleListener net.Listener

	core       *enrollment.Service
	hook       *webhook.Sender // nil without a webhook
	sweepEvery time.Duration
	fleetCheck *fleetCheck

	opts     Options
	cert     *certificate // nil when serving plain HTTP
	reloadMu sync.Mutex
	started  config.File // as the server started
	cfg      config.File // as last applied
}

// New builds the server: it opens the state, reads the Vault credentials and
// the TLS certificate, and binds the listener, so that every configuration
// mistake shows before Run.
func New(cfg config.File, opts Options, log *slog.Logger) (*App, error) {
	files, err := readFiles(cfg, opts)
	if err != nil {
		return nil, err
	}
	if files.auditKey == nil {
		log.Warn("the audit log has no key (audit.key_file): whoever can write the database can rewrite it unseen")
	}
	layout := vault.Layout{EnrollMount: cfg.Vault.EnrollMount, KVMount: cfg.Vault.KVMount}
	m := metrics.New()
	vc, err := vault.NewServer(vaultOptions(cfg, m.ObserveVault),
		layout, files.creds, log.With("component", "vault"))
	if err != nil {
		return nil, err
	}
	auditKey, fleets := files.auditKey, files.fleets
	store, err := openStore(cfg, auditKey)
	if err != nil {
		return nil, err
	}
	coreLog := log.With("component", "enrollment")
	var hook *webhook.Sender
	var notify enrollment.Notifier
	if cfg.Alerts.WebhookURL != "" {
		hook = webhook.New(cfg.Alerts.WebhookURL, cfg.Alerts.WebhookTimeout, log.With("component", "webhook"))
		notify = hook
	}
	core := enrollment.New(vc, store, fleets, enrollment.NewAlerter(store, coreLog, m, notify), coreLog)
	core.Instrument(m)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("listen (listen): %w", err)
	}
	var metricsSrv *http.Server
	var metricsLn net.Listener
	if cfg.MetricsListen != "" {
		if metricsLn, err = net.Listen("tcp", cfg.MetricsListen); err != nil {
			ln.Close()
			store.Close()
			return nil, fmt.Errorf("listen (metrics_listen): %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", m.Handler())
		metricsSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 15 * time.Second,
			WriteTimeout: 30 * time.Second, IdleTimeout: 60 * time.Second, MaxHeaderBytes: 16 << 10}
	}
	names := make([]string, len(fleets))
	for i, f := range fleets {
		names[i] = f.Name
	}
	check := &fleetCheck{fleets: names, read: vc.Generations, loggedIn: vc.LoggedIn(), log: log.With("component", "fleets"),
		every: time.Minute, retry: 5 * time.Second}
	ready := func(ctx context.Context) error {
		if err := vc.Ready(ctx); err != nil {
			return err
		}
		return check.ready()
	}
	adm := admin.New(vc, core, store, auditKey, log.With("component", "admin"))
	consoleSrv, consoleLn, err := newConsole(cfg, adm, names, files.tls, log.With("component", "console"))
	if err != nil {
		ln.Close()
		if metricsLn != nil {
			metricsLn.Close()
		}
		store.Close()
		return nil, err
	}
	srv := &http.Server{
		Handler:           httpapi.New(core, adm, ready, log.With("component", "http")),
		TLSConfig:         files.tls,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	return &App{log: log, store: store, vault: vc, srv: srv, listener: ln, tls: files.tls != nil,
		metrics: metricsSrv, metricsListener: metricsLn, console: consoleSrv, consoleListener: consoleLn,
		core: core, hook: hook, sweepEvery: cfg.Alerts.SweepInterval, fleetCheck: check,
		opts: opts, cert: files.cert, started: cfg, cfg: cfg}, nil
}

// Addr is the address the server listens on.
func (a *App) Addr() net.Addr { return a.listener.Addr() }

// MetricsAddr is the address metrics are served on; nil without
// metrics_listen.
func (a *App) MetricsAddr() net.Addr {
	if a.metricsListener == nil {
		return nil
	}
	return a.metricsListener.Addr()
}

// Run serves until ctx ends, then shuts down gracefully and closes the
// state. The first part to fail stops the others.
func (a *App) Run(ctx context.Context) error {
	defer a.store.Close()
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return a.vault.Run(ctx) })
	g.Go(func() error { return a.fleetCheck.run(ctx) })
	if a.opts.ReloadConfig != nil {
		g.Go(func() error { return a.reloadOnHangup(ctx) })
	}
	g.Go(func() error {
		a.log.Info("serving", "addr", a.listener.Addr().String(), "tls", a.tls)
		var err error
		if a.tls {
			err = a.srv.ServeTLS(a.listener, "", "")
		} else {
			err = a.srv.Serve(a.listener)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return err
	})
	if a.metrics != nil {
		g.Go(func() error {
			a.log.Info("serving metrics", "addr", a.metricsListener.Addr().String())
			if err := a.metrics.Serve(a.metricsListener); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if a.console != nil {
		g.Go(a.serveConsole)
	}
	g.Go(func() error {
		<-ctx.Done()
		shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if a.metrics != nil {
			_ = a.metrics.Shutdown(shutCtx)
		}
		if a.console != nil {
			_ = a.console.Shutdown(shutCtx)
		}
		return a.srv.Shutdown(shutCtx)
	})
	g.Go(func() error { return a.purgeTokens(ctx) })
	g.Go(func() error { return a.sweep(ctx) })
	if a.hook != nil {
		g.Go(func() error { return a.hook.Run(ctx) })
	}
	err := g.Wait()
	a.log.Info("stopped")
	return err
}

// sweep closes the loop on credentials never acknowledged in time.
func (a *App) sweep(ctx context.Context) error {
	t := time.NewTicker(a.sweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			// One replica sweeps at a time; the others skip the round.
			_, err := a.store.Exclusive(ctx, "sweep-unacknowledged", func(ctx context.Context) error {
				n, err := a.core.SweepUnacknowledged(ctx)
				if err != nil {
					a.log.Warn("sweep unacknowledged credentials", "err", err, "swept", n)
				}
				return nil
			})
			if err != nil {
				a.log.Warn("sweep unacknowledged credentials", "err", err)
			}
		}
	}
}

func (a *App) purgeTokens(ctx context.Context) error {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-t.C:
			if _, err := a.store.PurgeTokens(ctx, now); err != nil {
				a.log.Warn("purge consumed tokens", "err", err)
			}
			if _, err := a.store.PurgeChallenges(ctx, now); err != nil {
				a.log.Warn("purge attestation challenges", "err", err)
			}
		}
	}
}

// tpmPolicy reads a fleet's TPM settings: the CA bundle file, the
// allow-list and the PCR policy.
func tpmPolicy(t config.TPM) (enrollment.TPMPolicy, error) {
	p := enrollment.TPMPolicy{Mode: t.Mode, PCRs: t.PCRs, ChallengeTTL: t.ChallengeTTL}
	if t.Mode == wire.TPMOff {
		return p, nil
	}
	if t.EKCAFile != "" {
		data, err := os.ReadFile(t.EKCAFile)
		if err != nil {
			return p, fmt.Errorf("ek_ca_file: %w", err)
		}
		if p.CAs, err = attest.ParseCAs(data); err != nil {
			return p, fmt.Errorf("ek_ca_file %s: %w", t.EKCAFile, err)
		}
	}
	if t.EKCertFetch == "allowed" {
		src, err := certSource(t)
		if err != nil {
			return p, err
		}
		p.FetchEKCert = src.Fetch
	}
	p.AllowedEKs = make(map[string]bool, len(t.EKAllowList))
	for _, h := range t.EKAllowList {
		p.AllowedEKs[strings.ToLower(h)] = true
	}
	if bp := t.BootPolicy; bp != nil {
		p.Boot = &attest.BootPolicy{SecureBoot: orDefaultString(bp.SecureBoot, attest.SecureBootAny), PCR4Allowed: map[string]bool{}}
		for _, h := range bp.PCR4Allowed {
			p.Boot.PCR4Allowed[strings.ToLower(h)] = true
		}
	}
	if len(t.PCRPolicy) > 0 {
		p.PCRPolicy = make(map[int][][]byte, len(t.PCRPolicy))
		for idx, values := range t.PCRPolicy {
			for _, v := range values {
				b, err := hex.DecodeString(v)
				if err != nil {
					return p, fmt.Errorf("pcr_policy: %w", err)
				}
				p.PCRPolicy[idx] = append(p.PCRPolicy[idx], b)
			}
		}
	}
	return p, nil
}

// certSource is the fleet's manufacturer service, trusted through the
// system's roots or the fleet's own CA file.
func certSource(t config.TPM) (*ekfetch.Source, error) {
	client := &http.Client{Timeout: ekfetch.Timeout}
	if t.EKCertFetchCAFile != "" {
		data, err := os.ReadFile(t.EKCertFetchCAFile)
		if err != nil {
			return nil, fmt.Errorf("ek_cert_fetch_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(data) {
			return nil, fmt.Errorf("ek_cert_fetch_ca_file %s: no certificate", t.EKCertFetchCAFile)
		}
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	}
	format := t.EKCertFormat
	if format == "" {
		format = ekfetch.Intel
	}
	return ekfetch.NewSource(format, t.EKCertURL, client)
}

// openStore opens PostgreSQL when configured, else the bbolt file; audit
// records appended are MACed with key when it is set.
func openStore(cfg config.File, key audit.Key) (inventory.Store, error) {
	if cfg.DatabaseURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		s, err := pgstore.Open(ctx, cfg.DatabaseURL)
		if err == nil {
			s.SetAuditKey(key)
		}
		return s, err
	}
	s, err := boltstore.Open(cfg.StatePath)
	if err == nil {
		s.SetAuditKey(key)
	}
	return s, err
}

func orDefaultString(s, def string) string {
	if s == "" {
		return def
	}
	return s
}
