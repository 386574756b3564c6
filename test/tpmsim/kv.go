package tpmsim

import (
	"bytes"
	"maps"
	"sync"

	"github.com/edge-enroll/enroll/enroll-client/state"
)

// KV is an in-memory state store for the client's TPM key blobs.
type KV struct {
	mu sync.Mutex
	m  map[string][]byte
}

// NewKV returns an empty store.
func NewKV() *KV { return &KV{m: map[string][]byte{}} }

// ReadState returns a copy of the value at key, or state.ErrNotFound.
func (k *KV) ReadState(key string) ([]byte, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	v, ok := k.m[key]
	if !ok {
		return nil, state.ErrNotFound
	}
	return bytes.Clone(v), nil
}

// WriteState stores a copy of v at key.
func (k *KV) WriteState(key string, v []byte) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.m[key] = bytes.Clone(v)
	return nil
}

// Clone copies the store, as a copied disk would.
func (k *KV) Clone() *KV {
	k.mu.Lock()
	defer k.mu.Unlock()
	return &KV{m: maps.Clone(k.m)}
}
