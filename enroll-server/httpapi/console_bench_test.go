package httpapi_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/admin"
	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/console"
	"github.com/edge-enroll/enroll/enroll-server/httpapi"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/enroll-server/pgstore"
	"github.com/edge-enroll/enroll/enroll-server/vault"
	"github.com/edge-enroll/enroll/pkg/wire"
	"github.com/edge-enroll/enroll/test/pgtest"
)

// grantingVault stands in for Vault in the benchmark, which measures the
// server's own time (store, template, HTTP) for a page: it grants every
// token everything at once. What Vault decides is proved against a real
// one in test/e2e. Methods it does not override are never called.
type grantingVault struct{ admin.Vault }

func (grantingVault) Capabilities(context.Context, string, string) ([]string, error) {
	return []string{"root"}, nil
}

func (grantingVault) LookupToken(context.Context, string) (vault.TokenInfo, error) {
	return vault.TokenInfo{DisplayName: "bench", Accessor: "accessor"}, nil
}

func (grantingVault) Generations(context.Context, string) (vault.Generations, error) {
	return vault.Generations{Current: 1, List: []vault.Generation{{N: 1, State: vault.GenerationLive}}}, nil
}

func (grantingVault) EnrollmentSecretIDs(context.Context, string) (map[int]int, error) {
	return map[int]int{1: 1}, nil
}

// servingCore serves every fleet; the devices page calls nothing else.
type servingCore struct{ admin.Core }

func (servingCore) Serves(string) bool { return true }

// bulkStore loads an inventory in one go.
type bulkStore interface {
	inventory.Store
	SaveDevices(ctx context.Context, devs []inventory.Device) error
}

// benchCount is the positive number in the environment variable name, or
// def.
func benchCount(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// inEachStore runs bench over an empty bbolt store, then an empty
// PostgreSQL one (skipped without a PostgreSQL server).
func inEachStore(b *testing.B, bench func(b *testing.B, name string, s bulkStore)) {
	b.Run("bbolt", func(b *testing.B) {
		s, err := boltstore.Open(filepath.Join(b.TempDir(), "bench.db"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		bench(b, "bbolt", s)
	})
	b.Run("postgres", func(b *testing.B) {
		pg := pgtest.Start(b)
		s, err := pgstore.Open(context.Background(), pg.NewDatabase(b))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		bench(b, "postgres", s)
	})
}

// BenchmarkConsoleDevicesPage is the server's time for the console's
// devices page (50 devices) over a store of 100,000: the first page, a
// page deep into the fleet, an ID search and a state filter; and for the
// overview, which counts them all. In bbolt and in PostgreSQL (skipped
// without a PostgreSQL server).
func BenchmarkConsoleDevicesPage(b *testing.B) {
	inEachStore(b, benchDevicesPage)
}

func benchDevicesPage(b *testing.B, _ string, s bulkStore) {
	n := benchCount("BENCH_CONSOLE_DEVICES", 100_000)
	now := time.Now().UTC()
	devs := make([]inventory.Device, n)
	for i := range devs {
		state := inventory.DeviceEnrolled
		if i%10 == 0 {
			state = inventory.DevicePending
		}
		devs[i] = inventory.Device{Fleet: "acme", ID: fmt.Sprintf("dev-%07d", i), State: state, Generation: 1 + i%3,
			Enrollments: 1, Facts: wire.Facts{Hostname: fmt.Sprintf("host-%d", i), OS: "linux", Arch: "arm64", ClientVersion: "1.4.2"},
			CreatedAt: now, UpdatedAt: now.Add(-time.Duration(i) * time.Second), EnrolledAt: now}
	}
	if err := s.SaveDevices(context.Background(), devs); err != nil {
		b.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	con, err := console.New(admin.New(grantingVault{}, servingCore{}, s, nil, log), []string{"acme"}, "userpass", log)
	if err != nil {
		b.Fatal(err)
	}
	h := httpapi.NewConsole(con, log)
	sess := con.Sessions.Start("bench-token", "bench", time.Hour, false, nil, now)
	pages := []struct{ name, query string }{
		{"first page", "fleet=acme"},
		{"deep page", "fleet=acme&after=acme/" + devs[n*9/10].ID},
		{"ID search", "fleet=acme&q=" + devs[n/2].ID[:len(devs[n/2].ID)-2]},
		{"pending", "fleet=acme&state=pending"},
	}
	// The overview counts the whole inventory: it reads every device.
	b.Run("overview", func(b *testing.B) {
		for b.Loop() {
			req := httptest.NewRequest(http.MethodGet, "/", nil)
			req.AddCookie(&http.Cookie{Name: "__Host-enroll-console", Value: sess.ID})
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("overview: %d %s", rec.Code, rec.Body.String())
			}
		}
	})
	for _, p := range pages {
		b.Run(p.name, func(b *testing.B) {
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, "/devices?"+p.query, nil)
				req.AddCookie(&http.Cookie{Name: "__Host-enroll-console", Value: sess.ID})
				rec := httptest.NewRecorder()
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d %s", p.query, rec.Code, rec.Body.String())
				}
			}
		})
	}
}
