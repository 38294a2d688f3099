package testbed

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// DeployUser is the non-root login of every lab host. It may use docker
// only through passwordless sudo.
const DeployUser = "deploy"

// accounts holds the account files of a lab host: the machine's own with
// the deploy user added, bind-mounted over /etc inside each host's mount
// namespace so the machine's files are never changed.
type accounts struct {
	uid, gid  int
	shadowGID int
	passwd    []byte
	group     []byte
	shadow    []byte
	sudoers   []byte
}

// labAccounts reads the machine's account files and adds DeployUser with
// the first uid and gid from 2000 up that neither file uses.
func labAccounts() (*accounts, error) {
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	group, err := os.ReadFile("/etc/group")
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	shadow, err := os.ReadFile("/etc/shadow")
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	sudoers, err := os.ReadFile("/etc/sudoers")
	if err != nil {
		return nil, fmt.Errorf("read sudoers (is sudo installed?): %w", err)
	}
	a := &accounts{}
	usedUID := idsInColumn(passwd, 2)
	usedGID := idsInColumn(group, 2)
	for id := 2000; ; id++ {
		if !usedUID[id] && !usedGID[id] {
			a.uid, a.gid = id, id
			break
		}
	}
	a.shadowGID = groupID(group, "shadow")

	var pw strings.Builder
	for _, line := range lines(passwd) {
		if strings.HasPrefix(line, DeployUser+":") {
			continue
		}
		pw.WriteString(line + "\n")
	}
	fmt.Fprintf(&pw, "%s:x:%d:%d:layercast lab:/home/%s:/bin/sh\n", DeployUser, a.uid, a.gid, DeployUser)
	a.passwd = []byte(pw.String())

	var gr strings.Builder
	for _, line := range lines(group) {
		if strings.HasPrefix(line, DeployUser+":") {
			continue
		}
		gr.WriteString(line + "\n")
	}
	fmt.Fprintf(&gr, "%s:x:%d:\n", DeployUser, a.gid)
	a.group = []byte(gr.String())

	// sshd without PAM refuses a key login to an account whose password
	// field says locked ("!..."); "*" means no password, not locked.
	var sh strings.Builder
	for _, line := range lines(shadow) {
		f := strings.Split(line, ":")
		if len(f) > 1 && f[0] == DeployUser {
			continue
		}
		if len(f) > 1 && f[0] == "root" {
			f[1] = "*"
			line = strings.Join(f, ":")
		}
		sh.WriteString(line + "\n")
	}
	fmt.Fprintf(&sh, "%s:*:19000:0:99999:7:::\n", DeployUser)
	a.shadow = []byte(sh.String())

	a.sudoers = append(append([]byte{}, sudoers...),
		[]byte("\n# layercast lab: the deploy user reaches docker only through sudo\n"+DeployUser+" ALL=(ALL:ALL) NOPASSWD: ALL\n")...)
	return a, nil
}

func lines(b []byte) []string {
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func idsInColumn(b []byte, col int) map[int]bool {
	used := map[int]bool{}
	for _, l := range lines(b) {
		f := strings.Split(l, ":")
		if len(f) > col {
			if id, err := strconv.Atoi(f[col]); err == nil {
				used[id] = true
			}
		}
	}
	return used
}

func groupID(group []byte, name string) int {
	for _, l := range lines(group) {
		f := strings.Split(l, ":")
		if len(f) > 2 && f[0] == name {
			if id, err := strconv.Atoi(f[2]); err == nil {
				return id
			}
		}
	}
	return 0
}
