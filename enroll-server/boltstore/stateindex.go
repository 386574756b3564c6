package boltstore

import (
	"bytes"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/edge-enroll/enroll/enroll-server/inventory"
)

// The devices of each state, for listings filtered by state: a fleet of a
// million with a thousand quarantined devices is listed a page at a time
// without reading the other 999,000. byState holds "state\x00fleet/id"
// (no value); stateOf holds "fleet/id" → state, so that a write finds the
// entry to move without decoding the device it replaces.
var (
	bucketByState = []byte("devices_by_state")
	bucketStateOf = []byte("device_state")
)

func stateKey(state string, key []byte) []byte {
	return append(append([]byte(state), 0), key...)
}

// putDevice stores d and keeps the state index in step: every write of a
// device goes through it.
func putDevice(tx *bolt.Tx, d inventory.Device) error {
	key := deviceKey(d.Fleet, d.ID)
	byState, stateOf := tx.Bucket(bucketByState), tx.Bucket(bucketStateOf)
	if old := stateOf.Get(key); old == nil || string(old) != d.State {
		if old != nil {
			if err := byState.Delete(stateKey(string(old), key)); err != nil {
				return err
			}
		}
		if err := byState.Put(stateKey(d.State, key), nil); err != nil {
			return err
		}
		if err := stateOf.Put(key, []byte(d.State)); err != nil {
			return err
		}
	}
	return put(tx.Bucket(bucketDevices), key, d)
}

// indexStates builds the state index of a file written before it existed.
func indexStates(tx *bolt.Tx) error {
	byState, stateOf := tx.Bucket(bucketByState), tx.Bucket(bucketStateOf)
	return tx.Bucket(bucketDevices).ForEach(func(k, v []byte) error {
		var d struct {
			State string `json:"state"`
		}
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("decode device %s: %w", k, err)
		}
		if err := byState.Put(stateKey(d.State, k), nil); err != nil {
			return err
		}
		return stateOf.Put(bytes.Clone(k), []byte(d.State))
	})
}
