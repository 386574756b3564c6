package console

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// MaxSessionLife bounds a session whose Vault token never expires (a
// root token): such a session still ends.
const MaxSessionLife = 8 * time.Hour

// maxSessions bounds the sessions kept in memory; past it the oldest
// expiring ones are dropped first.
const maxSessions = 10_000

// Session is one signed-in browser. The Vault token lives here, in the
// server's memory only; the browser holds the session's random ID.
type Session struct {
	ID      string
	CSRF    string // the token every form of this session carries
	Token   string // the person's Vault token; never sent to the browser
	Name    string
	Expires time.Time
	// Owned marks a token the server obtained at sign-in: signing out
	// revokes it. A pasted token is the person's own and is left alone.
	Owned bool
	// May says which areas ("devices/acme", "fleets/acme", "audit") the
	// token may change, to offer only the actions Vault would allow.
	May map[string]bool
	// Flash is a message for the next page shown (the outcome of an
	// action), shown once.
	Flash string
}

// Sessions keeps sessions in memory: a restart signs everyone out, and no
// token is ever written to disk.
type Sessions struct {
	mu sync.Mutex
	m  map[string]*Session
}

// NewSessions returns an empty set of sessions.
func NewSessions() *Sessions { return &Sessions{m: map[string]*Session{}} }

// Start makes a session for token, ending with the token's ttl (or
// MaxSessionLife, whichever comes first).
func (s *Sessions) Start(token, name string, ttl time.Duration, owned bool, may map[string]bool, now time.Time) *Session {
	life := MaxSessionLife
	if ttl > 0 && ttl < life {
		life = ttl
	}
	sess := &Session{ID: randomString(), CSRF: randomString(), Token: token, Name: name,
		Expires: now.Add(life), Owned: owned, May: may}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.m) >= maxSessions {
		s.dropExpired(now)
	}
	if len(s.m) >= maxSessions {
		s.dropSoonest()
	}
	s.m[sess.ID] = sess
	return sess
}

// Get returns the live session id names; an expired one is forgotten.
func (s *Sessions) Get(id string, now time.Time) (*Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[id]
	if !ok {
		return nil, false
	}
	if !now.Before(sess.Expires) {
		delete(s.m, id)
		return nil, false
	}
	return sess, true
}

// TakeFlash returns the session's message and clears it.
func (s *Sessions) TakeFlash(sess *Session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := sess.Flash
	sess.Flash = ""
	return f
}

// SetFlash leaves a message for the session's next page.
func (s *Sessions) SetFlash(sess *Session, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess.Flash = msg
}

// End forgets a session.
func (s *Sessions) End(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, id)
}

func (s *Sessions) dropExpired(now time.Time) {
	for id, sess := range s.m {
		if !now.Before(sess.Expires) {
			delete(s.m, id)
		}
	}
}

func (s *Sessions) dropSoonest() {
	var soonest *Session
	for _, sess := range s.m {
		if soonest == nil || sess.Expires.Before(soonest.Expires) {
			soonest = sess
		}
	}
	if soonest != nil {
		delete(s.m, soonest.ID)
	}
}

// CheckCSRF reports whether a form's token is the session's, in constant
// time.
func CheckCSRF(want, got string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// randomString is 256 random bits, URL-safe.
func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand never fails on a supported platform
	return base64.RawURLEncoding.EncodeToString(b)
}

// NewLoginCSRF returns the token a sign-in form and its cookie carry
// (there is no session yet to hold it).
func NewLoginCSRF() string { return randomString() }
