package node

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"syscall"

	"github.com/layercast/layercast/nodebin/jobspec"
)

// statStamp stats p and returns what it says and p's node cache stamp: the
// fields and layout of `stat -c jobspec.CacheStampFormat` (device, inode,
// size, status-change time with nanoseconds).
func statStamp(p string) (*syscall.Stat_t, string, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		return nil, "", fmt.Errorf("stat %s: %w", p, err)
	}
	return &st, fmt.Sprintf("%d %d %d %d.%09d", st.Dev, st.Ino, st.Size, st.Ctim.Sec, st.Ctim.Nsec), nil
}

// stampHolds reports whether the cached file p has a stamp that still
// matches it: p has not changed since it last hashed to its sha256.
func stampHolds(p string) bool {
	want, err := os.ReadFile(p + jobspec.CacheStampSuffix)
	if err != nil {
		return false
	}
	_, got, err := statStamp(p)
	return err == nil && string(bytes.TrimSuffix(want, []byte("\n"))) == got
}

// renewStamp writes p's stamp as p is now, owned like p (the node may run
// as root from a login user's cache), through a partial file the cache's
// pruning removes if the node dies before the rename.
func renewStamp(p string) error {
	st, line, err := statStamp(p)
	if err != nil {
		return fmt.Errorf("renew the stamp of %s: %w", p, err)
	}
	suffix := make([]byte, 6)
	_, _ = rand.Read(suffix)
	tmp := p + jobspec.CacheStampSuffix + ".partial-" + hex.EncodeToString(suffix)
	err = os.WriteFile(tmp, []byte(line+"\n"), 0o600)
	if err == nil && int(st.Uid) != os.Geteuid() {
		err = os.Chown(tmp, int(st.Uid), int(st.Gid))
	}
	if err == nil {
		err = os.Rename(tmp, p+jobspec.CacheStampSuffix)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("renew the stamp of %s: %w", p, err)
	}
	return nil
}
