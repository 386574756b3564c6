package boltstore

import (
	"fmt"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
)

// committer is group commit for bbolt: a write that finds the disk idle is
// committed at once, and writes that arrive while a commit is running go
// together into the next one, one fsync for all of them. Unlike bbolt's
// Batch it never waits for company, so a lone write pays one fsync and no
// timer, and a crowd of writers still shares fsyncs.
//
// As with Batch, a write function may run more than once (when another
// write in its group fails, the group is run again without it), so it must
// set its results afresh each time.
type committer struct {
	db *bolt.DB

	mu      sync.Mutex
	queue   []pending
	running bool
}

type pending struct {
	fn   func(*bolt.Tx) error
	done chan error
}

// write runs fn in a read-write transaction shared with the writes that
// arrive at the same time, and returns once that transaction is durable.
func (c *committer) write(fn func(*bolt.Tx) error) error {
	p := pending{fn: fn, done: make(chan error, 1)}
	c.mu.Lock()
	c.queue = append(c.queue, p)
	if !c.running {
		c.running = true
		go c.loop()
	}
	c.mu.Unlock()
	return <-p.done
}

// loop commits what is queued, group after group, until the queue is empty.
func (c *committer) loop() {
	for {
		c.mu.Lock()
		group := c.queue
		c.queue = nil
		if len(group) == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.commit(group)
	}
}

// commit runs a group in one transaction. A write that fails is taken out
// and run alone, so that it gets its own error and rolls back nothing but
// itself; the rest are run together again.
func (c *committer) commit(group []pending) {
	for len(group) > 0 {
		failed := -1
		err := c.db.Update(func(tx *bolt.Tx) error {
			for i, p := range group {
				if err := safely(p.fn, tx); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 {
			for _, p := range group {
				p.done <- err
			}
			return
		}
		alone := group[failed]
		group = slices.Delete(group, failed, failed+1)
		alone.done <- c.db.Update(func(tx *bolt.Tx) error { return safely(alone.fn, tx) })
	}
}

// safely turns a panic in a write function into that write's error, so one
// bad write cannot take the others (or the server) down with it.
func safely(fn func(*bolt.Tx) error, tx *bolt.Tx) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("write panicked: %v", r)
		}
	}()
	return fn(tx)
}
