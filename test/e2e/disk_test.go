package e2e

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edge-enroll/enroll/enroll-client/lifecycle"
	"github.com/edge-enroll/enroll/enroll-server/config"
)

// These tests put the device's state on a real filesystem that fails: a
// tiny tmpfs that fills up, and an ext4 image that turns read-only (as
// errors=remount-ro does on an I/O error). They mount filesystems, so they
// need root, as in CI.

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounts filesystems: needs root")
	}
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// mountTmpfs mounts a tmpfs of size bytes and returns its directory.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	needRoot(t)
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir)
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// ext4Disk is an ext4 filesystem on a loop device that can be made to fail.
type ext4Disk struct {
	t          *testing.T
	image, dir string
}

func mountExt4(t *testing.T) *ext4Disk {
	t.Helper()
	needRoot(t)
	base := t.TempDir()
	x := &ext4Disk{t: t, image: filepath.Join(base, "state.img"), dir: filepath.Join(base, "mnt")}
	if err := os.Mkdir(x.dir, 0o700); err != nil {
		t.Fatal(err)
	}
	run(t, "truncate", "-s", "16M", x.image)
	run(t, "mkfs.ext4", "-q", x.image)
	x.mount()
	t.Cleanup(func() { _ = exec.Command("umount", "-l", x.dir).Run() })
	return x
}

func (x *ext4Disk) mount() {
	run(x.t, "mount", "-o", "loop,errors=remount-ro", x.image, x.dir)
	if err := os.Chmod(x.dir, 0o700); err != nil && !errors.Is(err, syscall.EROFS) {
		x.t.Fatal(err)
	}
}

// fail makes the filesystem hit an error: the kernel remounts it
// read-only at once, open files included.
func (x *ext4Disk) fail() {
	out, err := exec.Command("findmnt", "-n", "-o", "SOURCE", x.dir).Output()
	if err != nil {
		x.t.Fatalf("findmnt: %v", err)
	}
	dev := filepath.Base(strings.TrimSpace(string(out)))
	if err := os.WriteFile("/sys/fs/ext4/"+dev+"/trigger_fs_error", []byte("test"), 0); err != nil {
		x.t.Fatalf("trigger an ext4 error: %v", err)
	}
	if err := os.WriteFile(filepath.Join(x.dir, "probe"), nil, 0o600); !errors.Is(err, syscall.EROFS) {
		x.t.Fatalf("the filesystem did not turn read-only: %v", err)
	}
}

// repair is what the operator does: unmount, fsck, mount again.
func (x *ext4Disk) repair() {
	run(x.t, "umount", x.dir)
	if err := exec.Command("e2fsck", "-fy", x.image).Run(); err != nil {
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() > 1 { // 1: errors corrected
			x.t.Fatalf("e2fsck: %v", err)
		}
	}
	x.mount()
}

// moveState puts the device's state (and status) in dir.
func (d *deviceDir) moveState(t *testing.T, dir string) {
	t.Helper()
	raw := readFile(t, d.config)
	next := filepath.Join(dir, "state.db")
	writeFile(t, d.config, []byte(strings.Replace(raw, "state_path: "+d.statePath, "state_path: "+next, 1)))
	d.statePath = next
}

// fill writes to dir until its filesystem is full, and returns a function
// that frees the space again.
func fill(t *testing.T, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 512)
	for {
		if _, err = f.Write(chunk); err != nil {
			break
		}
	}
	f.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling %s: %v", dir, err)
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Error(err)
		}
	}
}

// The state's filesystem turns read-only while the server answers a
// refresh: the device cannot save the wrapped credential, so it does not
// unwrap it; it keeps its token alive and in the sink meanwhile. After the
// operator's fsck and a restart, it finishes the same refresh: one live
// secret ID, no alert, and the sink's token worked throughout.
func TestStateDiskTurnsReadOnlyMidRefresh(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL, f.DeviceSecretIDTTL = 15*time.Second, time.Hour, time.Minute
	}})
	disk := mountExt4(t)
	bin := clientBinary(t)
	line := e.faultLine()
	d := e.deviceDir("ro-disk")
	d.writeBundle(t, line.bundle)
	d.moveState(t, disk.dir)
	dm := e.startDaemon(bin, d)
	var current atomic.Pointer[daemon]
	current.Store(dm)
	line.watchSaves(func() string { return current.Load().out.String() })
	if !waitAuthenticated(t, d, dm, 40*time.Second, func(lifecycle.Status) bool { return true }) {
		t.FailNow()
	}
	stopWatch := e.watchSink(d)
	var mark int
	f := fault{step: "server POST /v1/identity/refresh", deliver: true, hook: func() {
		disk.fail()
		mark = line.mark()
	}}
	line.arm(&f)
	select {
	case <-f.hit:
	case <-time.After(60 * time.Second):
		t.Fatal("no refresh within 60s")
	}
	time.Sleep(20 * time.Second) // longer than the token's renewal period
	if n := line.unwrapsSince(mark); n != 0 {
		t.Fatalf("the device unwrapped %d times a credential it could not save", n)
	}
	if !strings.Contains(dm.out.String(), "cannot save the device state") {
		t.Fatalf("the daemon never said it could not save:\n%s", dm.out)
	}
	if out := dm.out.String(); !strings.Contains(out, `"msg":"token renewed to keep it"`) && !strings.Contains(out, `"msg":"logged in again to keep a token"`) {
		t.Fatalf("the token was not renewed while the disk was read-only:\n%s", dm.out)
	}
	dm.stop()
	disk.repair()
	dm = e.startDaemon(bin, d)
	current.Store(dm)
	if !waitAuthenticated(t, d, dm, 40*time.Second, func(s lifecycle.Status) bool { return s.Refreshes >= 1 }) {
		t.FailNow()
	}
	ok, failed := stopWatch()
	dm.stop()
	if failed != 0 || ok == 0 {
		t.Fatalf("sink checks: %d worked, %d failed", ok, failed)
	}
	if u := line.unsavedSteps(); len(u) != 0 {
		t.Fatalf("requests sent while the state was not on disk: %v", u)
	}
	st, err := d.readState()
	if err != nil {
		t.Fatal(err)
	}
	e.keep(st.Token, st.SecretID)
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 || got[0] != st.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only %s", got, st.SecretIDAccessor)
	}
	if _, alerts := e.inventory(); len(alerts) != 0 {
		t.Fatalf("alerts: %+v", alerts)
	}
}

// The state lives on a 64 KiB tmpfs that fills up just as the server hands
// out the device's first credential: from the first save that fails, the
// device sends nothing until the state is on disk again, and it finishes
// once space is freed. Later, with the disk
// full again for longer than its token lives, it logs in again with its
// secret ID and the sink gets each new token: it never holds a dead one.
func TestFullStateDisk(t *testing.T) {
	e := newEnv(t, options{fleet: func(f *config.Fleet) {
		f.DeviceTokenTTL, f.DeviceTokenMaxTTL = 6*time.Second, 9*time.Second
	}})
	dir := mountTmpfs(t, "64k")
	bin := clientBinary(t)
	line := e.faultLine()
	d := e.deviceDir("full-disk")
	d.writeBundle(t, line.bundle)
	d.moveState(t, dir)
	var free func()
	f := fault{step: "server POST /v1/enroll", deliver: true, hook: func() { free = fill(t, dir) }}
	line.arm(&f)
	dm := e.startDaemon(bin, d)
	line.watchSaves(dm.out.String)
	select {
	case <-f.hit:
	case <-time.After(30 * time.Second):
		t.Fatal("no enrollment within 30s")
	}
	// Whether a save fails depends on whether the state still fits in
	// pages the database already holds: wait for one that does not.
	waitFor(t, 20*time.Second, "a save to fail on the full disk", func() bool {
		return strings.Contains(dm.out.String(), logCannotSave)
	})
	time.Sleep(3 * time.Second)
	if u := line.unsavedSteps(); len(u) != 0 {
		t.Fatalf("requests sent while the state was not on disk: %v\n%s", u, dm.out)
	}
	free()
	if !waitAuthenticated(t, d, dm, 40*time.Second, func(lifecycle.Status) bool { return true }) {
		t.FailNow()
	}

	// Full again, for three token lifetimes.
	stopWatch := e.watchSink(d)
	free = fill(t, dir)
	before := readToken(d.sinkPath)
	time.Sleep(20 * time.Second)
	if readToken(d.sinkPath) == before {
		t.Fatal("the sink kept the same token through three token lifetimes")
	}
	free()
	ok, failed := stopWatch()
	dm.stop()
	if failed != 0 || ok == 0 {
		t.Fatalf("sink checks: %d worked, %d failed", ok, failed)
	}
	if u := line.unsavedSteps(); len(u) != 0 {
		t.Fatalf("requests sent while the state was not on disk: %v\n%s", u, dm.out)
	}
	st, err := d.readState()
	if err != nil {
		t.Fatal(err)
	}
	e.keep(st.Token, st.SecretID)
	if st.Enrollments != 1 || st.BootstrapLogins != 1 {
		t.Fatalf("enrollments %d, bootstrap logins %d; want 1 and 1", st.Enrollments, st.BootstrapLogins)
	}
	if got := e.deviceSecretIDAccessors(d.id); len(got) != 1 || got[0] != st.SecretIDAccessor {
		t.Fatalf("live secret IDs %v, want only %s", got, st.SecretIDAccessor)
	}
	if _, alerts := e.inventory(); len(alerts) != 0 {
		t.Fatalf("alerts: %+v", alerts)
	}
}
