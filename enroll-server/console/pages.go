package console

import (
	"context"
	"net/url"
	"slices"
	"strings"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/audit"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// pageSize is how many devices a page of the devices list shows.
const pageSize = 50

func (c *Console) page(sess *Session, name, title string, data any) Page {
	return Page{Name: name, Title: title, Session: sess, Flash: c.Sessions.TakeFlash(sess), Data: data}
}

// Overview is the fleet at a glance.
func (c *Console) Overview(ctx context.Context, sess *Session) (Page, error) {
	o, err := c.admin.Overview(ctx, sess.Token, c.fleets)
	if err != nil {
		return Page{}, err
	}
	return c.page(sess, "overview", "Overview", o), nil
}

// DevicesView is the devices page's data.
type DevicesView struct {
	Filter  url.Values
	Fleets  []string
	States  []string
	Devices []wire.Device
	Next    string // the query of the next page; "" on the last
}

var states = []string{inventory.DevicePending, inventory.DeviceEnrolling, inventory.DeviceEnrolled,
	inventory.DeviceQuarantined, inventory.DeviceRevoked, inventory.DeviceRejected}

// Devices lists a page of devices: q holds the search (an ID prefix), the
// filters (fleet, state, generation, seen: a duration or a time) and the
// cursor (after).
func (c *Console) Devices(ctx context.Context, sess *Session, q url.Values) (Page, error) {
	gen, err := admin.ParseGeneration(q.Get("generation"))
	if err != nil {
		return Page{}, err
	}
	since, err := admin.ParseSince(q.Get("seen"), c.now())
	if err != nil {
		return Page{}, err
	}
	list, err := c.admin.Devices(ctx, sess.Token, admin.ListFilter{Fleet: q.Get("fleet"), Prefix: strings.TrimSpace(q.Get("q")),
		State: q.Get("state"), Generation: gen, SeenSince: since, After: q.Get("after"), Limit: pageSize})
	if err != nil {
		return Page{}, err
	}
	v := DevicesView{Filter: q, Fleets: c.fleets, States: states, Devices: list.Devices}
	if list.Next != "" {
		next := url.Values{}
		for _, k := range []string{"q", "fleet", "state", "generation", "seen"} {
			if q.Get(k) != "" {
				next.Set(k, q.Get(k))
			}
		}
		next.Set("after", list.Next)
		v.Next = next.Encode()
	}
	return c.page(sess, "devices", "Devices", v), nil
}

// DeviceView is one device's page.
type DeviceView struct {
	Device wire.Device
	Audit  []audit.Record // its records, newest first
}

// maxDeviceRecords bounds the audit records a device's page shows.
const maxDeviceRecords = 100

// Device shows one device, its history and actions.
func (c *Console) Device(ctx context.Context, sess *Session, fleet, id string) (Page, error) {
	d, err := c.admin.Device(ctx, sess.Token, fleet, id)
	if err != nil {
		return Page{}, err
	}
	v := DeviceView{Device: d}
	// The audit log spans every fleet: a fleet's own administrator may
	// not read it, and sees the device without its history.
	if recs, err := c.admin.Audit(ctx, sess.Token); err == nil {
		for i := len(recs) - 1; i >= 0 && len(v.Audit) < maxDeviceRecords; i-- {
			if recs[i].Fleet == fleet && recs[i].DeviceID == id {
				v.Audit = append(v.Audit, recs[i])
			}
		}
	}
	return c.page(sess, "device", "Device "+id, v), nil
}

// ApprovalsView is the approvals page's data.
type ApprovalsView struct {
	Devices   []wire.Device
	MayDecide bool // the session may decide on at least one of them
}

// Approvals lists the devices waiting for an administrator.
func (c *Console) Approvals(ctx context.Context, sess *Session) (Page, error) {
	list, err := c.admin.Devices(ctx, sess.Token, admin.ListFilter{State: inventory.DevicePending, Limit: 500})
	if err != nil {
		return Page{}, err
	}
	v := ApprovalsView{Devices: list.Devices}
	for _, d := range list.Devices {
		v.MayDecide = v.MayDecide || sess.May["devices/"+d.Fleet]
	}
	return c.page(sess, "approvals", "Pending approvals", v), nil
}

// AlertsView is the alerts page's data.
type AlertsView struct {
	Alerts []inventory.Alert // newest first
	Open   int
}

// Alerts lists the security alerts, newest first.
func (c *Console) Alerts(ctx context.Context, sess *Session) (Page, error) {
	al, err := c.admin.AlertList(ctx, sess.Token)
	if err != nil {
		return Page{}, err
	}
	slices.Reverse(al)
	v := AlertsView{Alerts: al}
	for _, a := range al {
		if a.AckedBy == "" {
			v.Open++
		}
	}
	return c.page(sess, "alerts", "Alerts", v), nil
}

// Generations lists each fleet's bootstrap generations.
func (c *Console) Generations(ctx context.Context, sess *Session) (Page, error) {
	var out []wire.Generations
	for _, f := range c.fleets {
		g, err := c.admin.Generations(ctx, sess.Token, f)
		if wire.CodeOf(err) == wire.CodeForbidden {
			continue // another fleet's administrator
		}
		if err != nil {
			return Page{}, err
		}
		out = append(out, g)
	}
	return c.page(sess, "generations", "Generations", out), nil
}

// AuditView is the audit page's data.
type AuditView struct {
	Check   wire.AuditCheck
	Head    string // the head checked against, as given
	Records []audit.Record
}

// maxAuditRecords bounds the records the audit page shows.
const maxAuditRecords = 200

// Audit verifies the audit log (against head when given) and shows its
// newest records.
func (c *Console) Audit(ctx context.Context, sess *Session, head string) (Page, error) {
	chk, err := c.admin.VerifyAudit(ctx, sess.Token, strings.TrimSpace(head))
	if err != nil {
		return Page{}, err
	}
	recs, err := c.admin.Audit(ctx, sess.Token)
	if err != nil {
		return Page{}, err
	}
	slices.Reverse(recs)
	if len(recs) > maxAuditRecords {
		recs = recs[:maxAuditRecords]
	}
	return c.page(sess, "audit", "Audit log", AuditView{Check: chk, Head: head, Records: recs}), nil
}
