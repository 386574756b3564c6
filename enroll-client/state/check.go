package state

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's on-disk meta page, as documented in bbolt's internal/common: a
// 16-byte page header, then magic, version, page size, flags, the root
// bucket (root page, sequence), the freelist page, the high-water page ID,
// the transaction ID and an FNV-64a checksum of the fields before it.
const (
	boltMagic      = 0xED0CDAED
	pageHeaderSize = 16
	metaSize       = 4 + 4 + 4 + 4 + 16 + 8 + 8 + 8 + 8
)

type boltMeta struct {
	pageSize uint32
	pgid     uint64
	txid     uint64
}

// checkFile refuses a file bbolt would fault on: bbolt maps the file and
// trusts its meta page, so a file cut short (a power cut, a full disk)
// makes it read past the end of the mapping, which kills the process with
// SIGBUS instead of returning an error. A missing or empty file is fine:
// bbolt initialises it.
func checkFile(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() == 0 {
		return nil
	}
	m0, err0 := readMeta(f, 0)
	var m1 boltMeta
	var err1 error
	if err0 == nil {
		m1, err1 = readMeta(f, int64(m0.pageSize))
	} else {
		m1, err1 = readMeta(f, int64(os.Getpagesize()))
	}
	var m boltMeta
	switch {
	case err0 == nil && err1 == nil:
		m = m0
		if m1.txid > m0.txid {
			m = m1
		}
	case err0 == nil:
		m = m0
	case err1 == nil:
		m = m1
	default:
		return fmt.Errorf("%w: no valid meta page (%v; %v)", ErrCorrupt, err0, err1)
	}
	if need := int64(m.pgid) * int64(m.pageSize); fi.Size() < need {
		return fmt.Errorf("%w: file is %d bytes, its meta page says %d", ErrCorrupt, fi.Size(), need)
	}
	return nil
}

func readMeta(r io.ReaderAt, off int64) (boltMeta, error) {
	buf := make([]byte, pageHeaderSize+metaSize)
	if _, err := r.ReadAt(buf, off); err != nil {
		return boltMeta{}, fmt.Errorf("read meta page at %d: %w", off, err)
	}
	b := buf[pageHeaderSize:]
	le := binary.LittleEndian
	if le.Uint32(b[0:]) != boltMagic {
		return boltMeta{}, fmt.Errorf("meta page at %d: bad magic", off)
	}
	h := fnv.New64a()
	_, _ = h.Write(b[:metaSize-8])
	if h.Sum64() != le.Uint64(b[metaSize-8:]) {
		return boltMeta{}, fmt.Errorf("meta page at %d: bad checksum", off)
	}
	m := boltMeta{pageSize: le.Uint32(b[8:]), pgid: le.Uint64(b[40:]), txid: le.Uint64(b[48:])}
	if m.pageSize < 512 || m.pageSize > 1<<20 || m.pageSize&(m.pageSize-1) != 0 {
		return boltMeta{}, fmt.Errorf("meta page at %d: implausible page size %d", off, m.pageSize)
	}
	return m, nil
}
