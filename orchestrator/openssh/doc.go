// Package openssh reaches hosts over SSH the way OpenSSH would: it reads
// ~/.ssh/config (Host aliases, HostName, User, Port, IdentityFile,
// ProxyJump with any number of hops, UserKnownHostsFile,
// GlobalKnownHostsFile, HostKeyAlias), authenticates with ssh-agent and key
// files, checks host keys strictly against the user's and the system's
// known_hosts files (@cert-authority included; @revoked in any file wins),
// dials with retries, and over one connection per host runs
// commands, starts processes with piped stdio, writes files over SFTP and
// forwards ports back to the bastion.
//
// It knows nothing of what layercast does on a host; package hostops does.
// testing.go has fakes of the Process and Forward it returns.
package openssh
