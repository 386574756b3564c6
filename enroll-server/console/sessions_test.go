package console

import (
	"testing"
	"time"
)

func TestSessionEndsWithItsToken(t *testing.T) {
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		ttl  time.Duration
		life time.Duration
	}{
		{"a token of ten minutes", 10 * time.Minute, 10 * time.Minute},
		{"a token of a week", 7 * 24 * time.Hour, MaxSessionLife},
		{"a token that never expires", 0, MaxSessionLife},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := NewSessions()
			sess := s.Start("token", "alice", tt.ttl, true, nil, t0)
			if _, ok := s.Get(sess.ID, t0.Add(tt.life-time.Second)); !ok {
				t.Fatal("session gone before its token")
			}
			if _, ok := s.Get(sess.ID, t0.Add(tt.life)); ok {
				t.Fatal("session outlived its token")
			}
			if _, ok := s.Get(sess.ID, t0); ok {
				t.Fatal("an expired session came back")
			}
		})
	}
}

func TestSessionsAreUnguessableAndBounded(t *testing.T) {
	s := NewSessions()
	t0 := time.Now()
	a := s.Start("a", "a", time.Hour, false, nil, t0)
	b := s.Start("b", "b", time.Hour, false, nil, t0)
	if a.ID == b.ID || a.CSRF == b.CSRF || a.ID == a.CSRF || len(a.ID) < 40 {
		t.Fatalf("session IDs and CSRF tokens must be distinct and long: %d", len(a.ID))
	}
	if _, ok := s.Get("", t0); ok {
		t.Fatal("an empty session ID found a session")
	}
	for i := range maxSessions + 10 {
		s.Start("t", "n", time.Duration(i+1)*time.Minute, false, nil, t0)
	}
	if len(s.m) > maxSessions {
		t.Fatalf("%d sessions kept, limit %d", len(s.m), maxSessions)
	}
}

func TestCheckCSRF(t *testing.T) {
	tests := []struct {
		want, got string
		ok        bool
	}{
		{"abc", "abc", true},
		{"abc", "abd", false},
		{"abc", "", false},
		{"", "", false}, // no token on either side is no proof
	}
	for _, tt := range tests {
		if got := CheckCSRF(tt.want, tt.got); got != tt.ok {
			t.Errorf("CheckCSRF(%q, %q) = %v, want %v", tt.want, tt.got, got, tt.ok)
		}
	}
}
