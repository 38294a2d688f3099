package openssh

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// testServer is an SSH server on 127.0.0.1 inside the test process. It
// authenticates by public key, runs exec requests with the local sh (so
// the commands layercast sends really run), serves SFTP, direct-tcpip (for
// ProxyJump, loopback targets only) and tcpip-forward.
type testServer struct {
	t          *testing.T
	addr       string
	port       int
	ln         net.Listener
	cfg        *ssh.ServerConfig
	authorized map[string]bool
	mu         sync.Mutex
	conns      []net.Conn
	// directTCPIP counts direct-tcpip channels served (jump traffic).
	directTCPIP atomic.Int32
	wg          sync.WaitGroup
}

func newSigner(t *testing.T) ssh.Signer {
	t.Helper()
	s, _ := newKey(t)
	return s
}

func newKey(t *testing.T) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// startServer serves with the given host keys (signers, possibly
// certificate signers) and accepts the given client keys.
func startServer(t *testing.T, hostKeys []ssh.Signer, clientKeys ...ssh.PublicKey) *testServer {
	t.Helper()
	s := &testServer{t: t, authorized: map[string]bool{}}
	for _, k := range clientKeys {
		s.authorized[string(k.Marshal())] = true
	}
	s.cfg = &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.authorized[string(key.Marshal())] {
				return &ssh.Permissions{}, nil
			}
			return nil, fmt.Errorf("key not authorized")
		},
	}
	for _, k := range hostKeys {
		s.cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.ln, s.addr, s.port = ln, ln.Addr().String(), ln.Addr().(*net.TCPAddr).Port
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.serveConn(c)
			}()
		}
	}()
	t.Cleanup(s.close)
	return s
}

func (s *testServer) close() {
	s.ln.Close()
	s.mu.Lock()
	for _, c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *testServer) serveConn(c net.Conn) {
	sc, chans, reqs, err := ssh.NewServerConn(c, s.cfg)
	if err != nil {
		c.Close()
		return
	}
	defer sc.Close()
	var (
		fmu      sync.Mutex
		forwards = map[uint32]net.Listener{}
	)
	defer func() {
		fmu.Lock()
		for _, l := range forwards {
			l.Close()
		}
		fmu.Unlock()
	}()
	go func() {
		for r := range reqs {
			switch r.Type {
			case "tcpip-forward":
				var req struct {
					Addr string
					Port uint32
				}
				if ssh.Unmarshal(r.Payload, &req) != nil || req.Addr != "127.0.0.1" {
					r.Reply(false, nil)
					continue
				}
				l, err := net.Listen("tcp", net.JoinHostPort(req.Addr, strconv.Itoa(int(req.Port))))
				if err != nil {
					r.Reply(false, nil)
					continue
				}
				port := uint32(l.Addr().(*net.TCPAddr).Port)
				fmu.Lock()
				forwards[port] = l
				fmu.Unlock()
				r.Reply(true, ssh.Marshal(struct{ Port uint32 }{port}))
				go s.serveForward(sc, l, req.Addr, port)
			case "cancel-tcpip-forward":
				var req struct {
					Addr string
					Port uint32
				}
				ssh.Unmarshal(r.Payload, &req)
				fmu.Lock()
				l, ok := forwards[req.Port]
				delete(forwards, req.Port)
				fmu.Unlock()
				if ok {
					l.Close()
				}
				r.Reply(ok, nil)
			default:
				r.Reply(r.Type == "keepalive@openssh.com", nil)
			}
		}
	}()
	for nc := range chans {
		switch nc.ChannelType() {
		case "session":
			ch, creqs, err := nc.Accept()
			if err != nil {
				continue
			}
			go s.serveSession(sc, ch, creqs)
		case "direct-tcpip":
			var req struct {
				Host       string
				Port       uint32
				OriginHost string
				OriginPort uint32
			}
			if ssh.Unmarshal(nc.ExtraData(), &req) != nil || req.Host != "127.0.0.1" {
				nc.Reject(ssh.Prohibited, "loopback only")
				continue
			}
			target, err := net.Dial("tcp", net.JoinHostPort(req.Host, strconv.Itoa(int(req.Port))))
			if err != nil {
				nc.Reject(ssh.ConnectionFailed, err.Error())
				continue
			}
			ch, creqs, err := nc.Accept()
			if err != nil {
				target.Close()
				continue
			}
			s.directTCPIP.Add(1)
			go ssh.DiscardRequests(creqs)
			go func() {
				go func() { io.Copy(ch, target); ch.CloseWrite() }()
				io.Copy(target, ch)
				target.Close()
				ch.Close()
			}()
		default:
			nc.Reject(ssh.UnknownChannelType, "no")
		}
	}
}

func (s *testServer) serveForward(sc *ssh.ServerConn, l net.Listener, addr string, port uint32) {
	for {
		c, err := l.Accept()
		if err != nil {
			return
		}
		ra := c.RemoteAddr().(*net.TCPAddr)
		payload := ssh.Marshal(struct {
			Addr       string
			Port       uint32
			OriginAddr string
			OriginPort uint32
		}{addr, port, ra.IP.String(), uint32(ra.Port)})
		ch, reqs, err := sc.OpenChannel("forwarded-tcpip", payload)
		if err != nil {
			c.Close()
			continue
		}
		go ssh.DiscardRequests(reqs)
		go func() {
			go func() { io.Copy(ch, c); ch.CloseWrite() }()
			io.Copy(c, ch)
			c.Close()
			ch.Close()
		}()
	}
}

func (s *testServer) serveSession(sc *ssh.ServerConn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var cmd *exec.Cmd
	var started = make(chan struct{})
	for r := range reqs {
		switch r.Type {
		case "exec":
			var p struct{ Cmd string }
			if ssh.Unmarshal(r.Payload, &p) != nil || cmd != nil {
				r.Reply(false, nil)
				continue
			}
			local := sc.LocalAddr().(*net.TCPAddr)
			remote := sc.RemoteAddr().(*net.TCPAddr)
			cmd = exec.Command("sh", "-c", p.Cmd)
			cmd.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME=/root",
				fmt.Sprintf("SSH_CONNECTION=%s %d %s %d", remote.IP, remote.Port, local.IP, local.Port)}
			cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
			cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				r.Reply(false, nil)
				return
			}
			if err := cmd.Start(); err != nil {
				r.Reply(false, nil)
				return
			}
			go func() {
				io.Copy(stdin, ch)
				stdin.Close()
			}()
			r.Reply(true, nil)
			close(started)
			go func() {
				err := cmd.Wait()
				code := 0
				if ee, ok := err.(*exec.ExitError); ok {
					code = ee.ExitCode()
					if code < 0 {
						code = 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
					}
				}
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Code uint32 }{uint32(code)}))
				ch.Close()
			}()
		case "subsystem":
			var p struct{ Name string }
			if ssh.Unmarshal(r.Payload, &p) != nil || p.Name != "sftp" {
				r.Reply(false, nil)
				continue
			}
			r.Reply(true, nil)
			srv, err := sftp.NewServer(ch)
			if err != nil {
				return
			}
			go func() {
				srv.Serve()
				srv.Close()
			}()
		case "signal":
			var p struct{ Signal string }
			if ssh.Unmarshal(r.Payload, &p) == nil && cmd != nil {
				<-started
				sig := map[string]syscall.Signal{"TERM": syscall.SIGTERM, "KILL": syscall.SIGKILL, "INT": syscall.SIGINT}[p.Signal]
				if sig != 0 {
					syscall.Kill(-cmd.Process.Pid, sig)
				}
			}
			if r.WantReply {
				r.Reply(true, nil)
			}
		default:
			if r.WantReply {
				r.Reply(r.Type == "env", nil)
			}
		}
	}
	if cmd != nil && cmd.Process != nil {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}
