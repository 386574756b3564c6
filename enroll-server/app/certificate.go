package app

import (
	"crypto/tls"
	"sync/atomic"
)

// certificate is the server's TLS certificate, replaced in place when the
// files are reloaded: handshakes after a reload see the new one, and
// connections already open keep theirs.
type certificate struct {
	certFile, keyFile string
	cur               atomic.Pointer[tls.Certificate]
}

func (c *certificate) get(*tls.ClientHelloInfo) (*tls.Certificate, error) { return c.cur.Load(), nil }

// replace takes the pair of another loaded certificate.
func (c *certificate) replace(from *certificate) { c.cur.Store(from.cur.Load()) }
