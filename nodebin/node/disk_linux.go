package node

import (
	"fmt"
	"log/slog"
	"strings"
	"syscall"

	"github.com/docker/go-units"
)

// diskUse is space a job needs on the filesystem holding path.
type diskUse struct {
	path  string
	bytes int64
	what  string
}

// checkSpace sums the uses per filesystem and fails with ErrNoSpace when one
// has less available than its sum. Paths it cannot stat are skipped.
func checkSpace(uses []diskUse, log *slog.Logger) error {
	type fsNeed struct {
		free  int64
		need  int64
		paths []string
		parts []string
	}
	var order []uint64
	byDev := map[uint64]*fsNeed{}
	for _, u := range uses {
		var st syscall.Stat_t
		var fs syscall.Statfs_t
		if err := syscall.Stat(u.path, &st); err != nil {
			log.Debug("disk check skipped", "path", u.path, "err", err)
			continue
		}
		if err := syscall.Statfs(u.path, &fs); err != nil {
			log.Debug("disk check skipped", "path", u.path, "err", err)
			continue
		}
		n, ok := byDev[st.Dev]
		if !ok {
			n = &fsNeed{free: int64(fs.Bavail) * fs.Bsize}
			byDev[st.Dev] = n
			order = append(order, st.Dev)
		}
		n.need += u.bytes
		n.paths = append(n.paths, u.path)
		n.parts = append(n.parts, fmt.Sprintf("%s %s", u.what, human(u.bytes)))
	}
	for _, dev := range order {
		n := byDev[dev]
		if n.free >= n.need {
			continue
		}
		return fmt.Errorf("%w: host has %s free in %s, job needs %s (%s); free space there or use a work dir on a larger disk",
			ErrNoSpace, human(n.free), strings.Join(n.paths, " and "), human(n.need), strings.Join(n.parts, " + "))
	}
	return nil
}

func human(n int64) string { return units.HumanSize(float64(n)) }
