package inventory

import (
	"errors"
	"fmt"
	"strings"
)

// Ansible's ansible_ssh_common_args, ansible_ssh_extra_args and
// ansible_ssh_args are ssh command-line options. What matters to layercast
// is whether they route through a jump host: -J HOP, -o ProxyJump=HOP, or
// the ProxyCommand Ansible's documentation shows for it, "ssh -W %h:%p
// [-q] [-p PORT] [-l USER] [USER@]HOP". Those become the host's
// ProxyJump, which layercast dials itself. Any other ProxyCommand cannot
// be followed and is an error; every other option is listed as ignored.

// sshArgs is what a host's ssh options say.
type sshArgs struct {
	// jump is the ProxyJump they ask for; "" for none.
	jump string
	// ignored are the options layercast does not use, as written.
	ignored []string
}

// sshFlagsWithArg are ssh's options that take an argument.
const sshFlagsWithArg = "BbcDEeFIiJLlmOopQRSWw"

// parseSSHArgs reads ssh command-line options.
func parseSSHArgs(s string) (sshArgs, error) {
	var out sshArgs
	toks, err := shellSplit(s)
	if err != nil {
		return out, err
	}
	setJump := func(j string) error {
		if strings.EqualFold(j, "none") {
			j = ""
		}
		if out.jump != "" && j != out.jump {
			return fmt.Errorf("names two jump hosts, %s and %s", out.jump, j)
		}
		out.jump = j
		return nil
	}
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		if len(tok) < 2 || tok[0] != '-' {
			out.ignored = append(out.ignored, tok)
			continue
		}
		flag, arg := tok[1], tok[2:]
		if strings.IndexByte(sshFlagsWithArg, flag) >= 0 && arg == "" {
			if i+1 == len(toks) {
				return out, fmt.Errorf("%s needs an argument", tok)
			}
			i++
			arg = toks[i]
		}
		switch flag {
		case 'J':
			if err := setJump(arg); err != nil {
				return out, err
			}
		case 'o':
			key, value := splitOption(arg)
			switch strings.ToLower(key) {
			case "proxyjump":
				if err := setJump(value); err != nil {
					return out, err
				}
			case "proxycommand":
				j, err := jumpOfProxyCommand(value)
				if err != nil {
					return out, err
				}
				if err := setJump(j); err != nil {
					return out, err
				}
			default:
				out.ignored = append(out.ignored, "-o "+arg)
			}
		default:
			if arg != "" && strings.IndexByte(sshFlagsWithArg, flag) >= 0 {
				out.ignored = append(out.ignored, "-"+string(flag)+" "+arg)
			} else {
				out.ignored = append(out.ignored, tok)
			}
		}
	}
	return out, nil
}

// splitOption splits an ssh_config option "Key=Value" or "Key Value".
func splitOption(s string) (key, value string) {
	s = strings.TrimSpace(s)
	i := strings.IndexAny(s, "= \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], "= \t")
}

// jumpOfProxyCommand turns "ssh -W %h:%p [-q] [-p PORT] [-l USER]
// [USER@]HOP" into the ProxyJump it amounts to; "none" into none.
func jumpOfProxyCommand(cmd string) (string, error) {
	if strings.EqualFold(strings.TrimSpace(cmd), "none") {
		return "", nil
	}
	unsupported := fmt.Errorf("ProxyCommand %q is not supported: use -J [user@]jumphost[:port] (or ProxyJump in ~/.ssh/config)", cmd)
	toks, err := shellSplit(cmd)
	if err != nil || len(toks) == 0 || (toks[0] != "ssh" && !strings.HasSuffix(toks[0], "/ssh")) {
		return "", unsupported
	}
	var host, user, port string
	forward := false
	for i := 1; i < len(toks); i++ {
		t := toks[i]
		next := func() (string, bool) {
			if i+1 == len(toks) {
				return "", false
			}
			i++
			return toks[i], true
		}
		var ok bool
		switch t {
		case "-q":
			continue
		case "-W":
			var w string
			w, ok = next()
			forward = ok && w == "%h:%p"
			if !forward {
				return "", unsupported
			}
		case "-p":
			if port, ok = next(); !ok {
				return "", unsupported
			}
		case "-l":
			if user, ok = next(); !ok {
				return "", unsupported
			}
		default:
			if strings.HasPrefix(t, "-") || host != "" {
				return "", unsupported
			}
			host = t
		}
	}
	if !forward || host == "" {
		return "", unsupported
	}
	if user != "" && !strings.Contains(host, "@") {
		host = user + "@" + host
	}
	if port != "" {
		host += ":" + port
	}
	return host, nil
}

// shellSplit splits s into words as a POSIX shell would: whitespace
// separates, single quotes keep everything, double quotes and backslashes
// work as in sh. No expansion.
func shellSplit(s string) ([]string, error) {
	var (
		words []string
		cur   strings.Builder
		in    bool // a word has started
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
		case c == '\'':
			j := strings.IndexByte(s[i+1:], '\'')
			if j < 0 {
				return nil, errors.New("unbalanced single quote")
			}
			cur.WriteString(s[i+1 : i+1+j])
			i += j + 1
			in = true
		case c == '"':
			i++
			for ; i < len(s) && s[i] != '"'; i++ {
				if s[i] == '\\' && i+1 < len(s) && strings.IndexByte("\"\\$`", s[i+1]) >= 0 {
					i++
				}
				cur.WriteByte(s[i])
			}
			if i == len(s) {
				return nil, errors.New("unbalanced double quote")
			}
			in = true
		case c == '\\' && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
			in = true
		default:
			cur.WriteByte(c)
			in = true
		}
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}
