package enrollment

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-server/boltstore"
	"github.com/edge-enroll/enroll/enroll-server/inventory"
	"github.com/edge-enroll/enroll/pkg/wire"
)

// A token found consumed when its request settles is a reuse (alert and
// refusal), unless the request's own claim, carrying the consumption,
// failed without saying whether it was written: then the consumption may
// be its own, and the request ends with its own error, raising nothing.
func TestSettleTellsAReuseFromALostCommit(t *testing.T) {
	store, err := boltstore.Open(filepath.Join(t.TempDir(), "s.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	counts := &alertCounts{raised: map[string]int{}, suppressed: map[string]int{}}
	s := New(nil, store, nil, NewAlerter(store, slog.New(slog.DiscardHandler), counts, nil), slog.New(slog.DiscardHandler))
	ctx := context.Background()
	lost := errors.New("connection lost during commit")
	spent := func(hash string, unsure bool) *spend {
		sp := &spend{TokenSpend: inventory.TokenSpend{Hash: hash, Expires: time.Now().Add(time.Hour), Fleet: "acme", Generation: 1},
			revoked: make(chan error, 1), unsure: unsure}
		sp.revoked <- nil
		// Written already: by this request's lost commit, or by another.
		if err := store.ConsumeToken(ctx, inventory.TokenSpend{Hash: hash, Expires: sp.Expires, Fleet: "acme", Generation: 1}); err != nil {
			t.Fatal(err)
		}
		return sp
	}

	if err := s.settle(ctx, "acme", "d1", spent("h-lost", true), lost); !errors.Is(err, lost) {
		t.Fatalf("after a lost commit: %v, want the request's own error", err)
	}
	if n := counts.raised[inventory.AlertEnrollmentTokenReuse]; n != 0 {
		t.Fatalf("a lost commit raised %d reuse alerts", n)
	}

	err = s.settle(ctx, "acme", "d2", spent("h-reused", false), errors.New("refused for another reason"))
	var we *wire.Error
	if !errors.As(err, &we) || we.Code != wire.CodeEnrollmentTokenReused {
		t.Fatalf("a token another request spent: %v, want enrollment_token_reused", err)
	}
	if n := counts.raised[inventory.AlertEnrollmentTokenReuse]; n != 1 {
		t.Fatalf("%d reuse alerts, want 1", n)
	}
}
