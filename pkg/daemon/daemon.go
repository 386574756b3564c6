// Package daemon runs enroll-client and enroll-server under the platform's
// service manager (systemd, SysV init, the Windows service control manager)
// and installs, controls and removes them there. It is the only package that
// imports github.com/kardianos/service.
package daemon

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/kardianos/service"
)

// unitTemplate is the hardened systemd unit of both binaries, in the
// template syntax of kardianos/service. The packages render the same file.
//
//go:embed unit.service
var unitTemplate string

// UnitTemplate returns the systemd unit template.
func UnitTemplate() string { return unitTemplate }

// Spec describes a service.
type Spec struct {
	Name        string
	Description string
	// Executable is the binary's absolute path; empty means this one.
	Executable string
	// Arguments the service manager passes, e.g. run -config FILE.
	Arguments []string
	// UserName runs the service as a dedicated user (Linux); empty: root.
	UserName string
	// System forces a service system by name ("linux-systemd",
	// "unix-systemv", ...); empty detects it.
	System string
	// StopTimeout bounds a graceful stop.
	StopTimeout time.Duration
}

// RunSpec is the spec of a program that runs as `name run -config FILE`,
// under a dedicated user named like it where the system has one. The
// configuration path is made absolute: a service manager has no working
// directory of the caller's.
func RunSpec(name, description, configPath string) Spec {
	abs, err := filepath.Abs(configPath)
	if err != nil {
		abs = configPath
	}
	return Spec{Name: name, Description: description, Arguments: []string{"run", "-config", abs}, UserName: DefaultUser(name)}
}

func (sp Spec) config() *service.Config {
	return &service.Config{
		Name: sp.Name, DisplayName: sp.Name, Description: sp.Description,
		Executable: sp.Executable, Arguments: sp.Arguments, UserName: sp.UserName,
		Option: service.KeyValue{
			"SystemdScript": unitTemplate,
			"Restart":       "on-failure",
			// Windows: start with the machine, restart on failure.
			"StartType":              "automatic",
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "5s",
			"OnFailureResetPeriod":   86400,
		},
	}
}

func (sp Spec) choose() error {
	if sp.System == "" {
		return nil
	}
	var names []string
	for _, s := range service.AvailableSystems() {
		if s.String() == sp.System {
			service.ChooseSystem(s)
			return nil
		}
		names = append(names, s.String())
	}
	return fmt.Errorf("service system %q is not available here (have %v)", sp.System, names)
}

// program adapts a run function to the service manager: Start launches it
// and returns at once; Stop cancels it and waits a bounded time.
type program struct {
	run     func(context.Context) error
	timeout time.Duration

	mu     sync.Mutex
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

func (p *program) Start(service.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.mu.Lock()
	p.cancel, p.done = cancel, make(chan struct{})
	p.mu.Unlock()
	go func() {
		err := p.run(ctx)
		p.mu.Lock()
		p.err = err
		p.mu.Unlock()
		close(p.done)
	}()
	return nil
}

func (p *program) Stop(service.Service) error {
	p.mu.Lock()
	cancel, done := p.cancel, p.done
	p.mu.Unlock()
	if cancel == nil {
		return nil
	}
	cancel()
	select {
	case <-done:
		p.mu.Lock()
		defer p.mu.Unlock()
		return p.err
	case <-time.After(p.timeout):
		return fmt.Errorf("did not stop within %v", p.timeout)
	}
}

// UnderManager reports whether a service manager started this process.
func UnderManager() bool { return !service.Interactive() }

// Run runs fn as a service until the manager stops it. Use it only when
// UnderManager reports true; interactively, run fn directly.
func Run(sp Spec, fn func(context.Context) error) error {
	if sp.StopTimeout <= 0 {
		sp.StopTimeout = 20 * time.Second
	}
	p := &program{run: fn, timeout: sp.StopTimeout}
	s, err := service.New(p, sp.config())
	if err != nil {
		return err
	}
	return s.Run()
}

// ErrNotRunning is Control's answer to status when the service is not
// running; the command exits 3, as LSB init scripts do.
var ErrNotRunning = errors.New("not running")

// Actions Control accepts.
var Actions = []string{"install", "uninstall", "start", "stop", "restart", "status"}

// Control installs, removes, starts, stops or restarts the service, or
// prints its status.
func Control(sp Spec, action string, out io.Writer) error {
	if action == "status" {
		st, err := Status(sp)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "%s: %s (%s)\n", st.Service, st.Status, st.Platform)
		if !st.Running() {
			return ErrNotRunning
		}
		return nil
	}
	if err := sp.choose(); err != nil {
		return err
	}
	s, err := service.New(&program{}, sp.config())
	if err != nil {
		return err
	}
	if err := service.Control(s, action); err != nil {
		return fmt.Errorf("%s %s (%s): %w", action, sp.Name, s.Platform(), err)
	}
	fmt.Fprintf(out, "%s: %s done (%s)\n", sp.Name, action, s.Platform())
	return nil
}

// ServiceStatus is what `service status` reports.
type ServiceStatus struct {
	Service string `json:"service"`
	// Status is running, stopped, not installed or not running (the
	// service manager could not tell more).
	Status   string `json:"status"`
	Platform string `json:"platform"`
}

// Running reports whether the service is running.
func (s ServiceStatus) Running() bool { return s.Status == "running" }

// Status asks the service manager about the service.
func Status(sp Spec) (ServiceStatus, error) {
	if err := sp.choose(); err != nil {
		return ServiceStatus{}, err
	}
	s, err := service.New(&program{}, sp.config())
	if err != nil {
		return ServiceStatus{}, err
	}
	st, err := s.Status()
	what := "stopped"
	switch {
	case err == nil && st == service.StatusRunning:
		what = "running"
	case errors.Is(err, service.ErrNotInstalled):
		what = "not installed"
	case err != nil:
		what = "not running"
	}
	return ServiceStatus{Service: sp.Name, Status: what, Platform: s.Platform()}, nil
}
