package console

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// Every action returns where to go next (a page of the console) and
// leaves its outcome as the session's flash message.

// maxPicked bounds the devices one approval form decides on.
const maxPicked = 500

// DeviceAction revokes or re-admits one device.
func (c *Console) DeviceAction(ctx context.Context, sess *Session, fleet, id, action, reason string) (string, error) {
	if action != "revoke" && action != "readmit" {
		return "", wire.Errorf(wire.CodeNotFound, "no device action %q", action)
	}
	d, err := c.admin.DeviceAction(ctx, sess.Token, action, fleet, id, wire.Reason{Reason: reason})
	if err != nil {
		return "", err
	}
	c.Sessions.SetFlash(sess, fmt.Sprintf("%s/%s: %s, now %s", fleet, id, action, d.State))
	return "/devices/" + url.PathEscape(fleet) + "/" + url.PathEscape(id), nil
}

// Decide approves or rejects (with reason) each picked device
// ("fleet/id"), one admin call each, and says how each went.
func (c *Console) Decide(ctx context.Context, sess *Session, decision, reason string, picked []string) (string, error) {
	if decision != "approve" && decision != "reject" {
		return "", wire.Errorf(wire.CodeInvalidRequest, "decision: approve or reject")
	}
	if len(picked) == 0 || len(picked) > maxPicked {
		return "", wire.Errorf(wire.CodeInvalidRequest, "pick 1 to %d devices", maxPicked)
	}
	if decision == "reject" && strings.TrimSpace(reason) == "" {
		return "", wire.Errorf(wire.CodeInvalidRequest, "a rejection needs a reason")
	}
	var done, failed []string
	for _, p := range picked {
		fleet, id, ok := inventory.SplitCursor(p)
		if !ok {
			return "", wire.Errorf(wire.CodeInvalidRequest, "device %q: want fleet/id", p)
		}
		_, err := c.admin.DeviceAction(ctx, sess.Token, decision, fleet, id, wire.Reason{Reason: reason})
		switch code := wire.CodeOf(err); {
		case err == nil:
			done = append(done, id)
		case code == wire.CodeForbidden || code == wire.CodeInvalidToken || code == wire.CodeUnauthenticated:
			return "", err // the same for every device: say it plainly
		default:
			failed = append(failed, id+" ("+Message(err)+")")
		}
	}
	msg := fmt.Sprintf("%s: %d done (%s)", decision, len(done), strings.Join(done, ", "))
	if len(failed) > 0 {
		msg += fmt.Sprintf("; %d failed: %s", len(failed), strings.Join(failed, "; "))
	}
	c.Sessions.SetFlash(sess, msg)
	return "/approvals", nil
}

// Message is what err may tell the person: the message of its
// *wire.Error, or nothing of an internal cause.
func Message(err error) string {
	var we *wire.Error
	if errors.As(err, &we) {
		return we.Message
	}
	return "internal error"
}

// Acknowledge acknowledges one alert.
func (c *Console) Acknowledge(ctx context.Context, sess *Session, seq string) (string, error) {
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil {
		return "", wire.Errorf(wire.CodeNotFound, "no such alert")
	}
	a, err := c.admin.AcknowledgeAlert(ctx, sess.Token, n)
	if err != nil {
		return "", err
	}
	c.Sessions.SetFlash(sess, fmt.Sprintf("alert %d acknowledged by %s", a.Seq, a.AckedBy))
	return "/alerts", nil
}

// Rotate starts a new generation of a fleet's bootstrap credential. Its
// secret ID is not shown: bundles are made with enrollctl, which keeps it
// off screens and out of browser histories.
func (c *Console) Rotate(ctx context.Context, sess *Session, fleet string) (string, error) {
	r, err := c.admin.Rotate(ctx, sess.Token, fleet)
	if err != nil {
		return "", err
	}
	c.Sessions.SetFlash(sess, fmt.Sprintf("fleet %s: generation %d started; make new image bundles with enrollctl bundle", fleet, r.Generation))
	return "/generations", nil
}

// Retire retires a generation, with the CLI's guard: refused within the
// fleet's rotation grace period or while devices depend on it, unless
// force.
func (c *Console) Retire(ctx context.Context, sess *Session, fleet, gen string, force bool) (string, error) {
	n, err := strconv.Atoi(gen)
	if err != nil || n < 1 {
		return "", wire.Errorf(wire.CodeInvalidRequest, "generation: want a positive number")
	}
	r, err := c.admin.EndGeneration(ctx, sess.Token, fleet, n, vault.GenerationRetired, force)
	if err != nil {
		return "", err
	}
	c.Sessions.SetFlash(sess, fmt.Sprintf("fleet %s: generation %d retired, %d secret IDs destroyed", fleet, r.Generation, r.DestroyedSecretIDs))
	return "/generations", nil
}
