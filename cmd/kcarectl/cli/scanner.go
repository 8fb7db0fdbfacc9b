package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/user"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/kcare/kcare/internal/agent"
	"github.com/kcare/kcare/internal/atomicfile"
	"github.com/kcare/kcare/internal/failure"
)

// The scanner interface's files, relative to --root. See docs/compliance.md.
const (
	// scannerUsersFile lists the scanner users, "NAME UID" a line; the
	// library reads it too and acts only for a listed uid.
	scannerUsersFile = "etc/sysconfig/kcare/scanner-users"
	// scannerProfile puts the library into LD_PRELOAD of a listed user's
	// login shell.
	scannerProfile = "etc/profile.d/kcare-scanner.sh"
	// ScannerLibrary is where the scanner interface library is installed.
	ScannerLibrary = "/usr/lib/kcare/libkcare_scanner.so"
)

// errUsage marks a usage error found after the flags were parsed.
var errUsage = failure.New(failure.Usage, "usage")

// scannerProfileText is /etc/profile.d/kcare-scanner.sh: plain POSIX sh,
// it sets LD_PRELOAD only when `id -un` is listed.
const scannerProfileText = `# kcare scanner interface, written by kcarectl --scanner-interface; do not edit.
# For the users listed in /etc/sysconfig/kcare/scanner-users, security
# scanners see the effective (live-patched) kernel version.
if [ -r /etc/sysconfig/kcare/scanner-users ] && [ -r ` + ScannerLibrary + ` ]; then
	kcare_me=$(id -un 2>/dev/null)
	while read -r kcare_user kcare_rest; do
		if [ -n "$kcare_me" ] && [ "$kcare_user" = "$kcare_me" ]; then
			case ":${LD_PRELOAD:-}:" in
			*` + ScannerLibrary + `*) ;;
			*) LD_PRELOAD="` + ScannerLibrary + `${LD_PRELOAD:+ $LD_PRELOAD}"; export LD_PRELOAD ;;
			esac
			break
		fi
	done < /etc/sysconfig/kcare/scanner-users
	unset kcare_me kcare_user kcare_rest
fi
`

var userName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?$`)

// scannerUser is one line of the scanner users file.
type scannerUser struct {
	name string
	uid  int
}

// runScannerInterface enables the scanner interface for users, or
// disables it for users (all when none are named).
func runScannerInterface(a *agent.Agent, action string, users []string, stdout io.Writer) error {
	root := a.Root
	if root == "" {
		root = "/"
	}
	usersPath := filepath.Join(root, scannerUsersFile)
	profilePath := filepath.Join(root, scannerProfile)
	current, err := readScannerUsers(usersPath)
	if err != nil {
		return err
	}
	for _, u := range users {
		if strings.HasPrefix(u, "-") {
			return fmt.Errorf("%w: option %s after --scanner-interface's users; give options first", errUsage, u)
		}
	}
	switch action {
	case "enable":
		if len(users) == 0 {
			return fmt.Errorf("%w: --scanner-interface enable needs at least one USER", errUsage)
		}
		for _, name := range users {
			u, err := lookupUser(root, name)
			if err != nil {
				return err
			}
			if u.uid == 0 {
				return fmt.Errorf("scanner user %q: the scanner interface is never for root", name)
			}
			current = setUser(current, u)
		}
		if err := writeScannerUsers(usersPath, current); err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(profilePath), 0o755); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(profilePath, []byte(scannerProfileText), 0o644); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(root, ScannerLibrary)); err != nil {
			fmt.Fprintf(stdout, "Warning: %s is not installed; the scanner interface does nothing without it\n", ScannerLibrary)
		}
	case "disable":
		if len(users) == 0 {
			current = nil
		}
		for _, name := range users {
			current = dropUser(current, name)
		}
		if len(current) > 0 {
			if err := writeScannerUsers(usersPath, current); err != nil {
				return err
			}
			break
		}
		for _, p := range []string{profilePath, usersPath} {
			if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
		}
	default:
		return fmt.Errorf("%w: --scanner-interface takes enable USER... or disable [USER...], not %q", errUsage, action)
	}
	if len(current) == 0 {
		fmt.Fprintln(stdout, "Scanner interface disabled")
		return nil
	}
	var names []string
	for _, u := range current {
		names = append(names, fmt.Sprintf("%s (uid %d)", u.name, u.uid))
	}
	fmt.Fprintf(stdout, "Scanner interface enabled for %s\n", strings.Join(names, ", "))
	return nil
}

func setUser(list []scannerUser, u scannerUser) []scannerUser {
	for i := range list {
		if list[i].name == u.name {
			list[i] = u
			return list
		}
	}
	return append(list, u)
}

func dropUser(list []scannerUser, name string) []scannerUser {
	var out []scannerUser
	for _, u := range list {
		if u.name != name {
			out = append(out, u)
		}
	}
	return out
}

// readScannerUsers reads the scanner users file; a missing file lists none.
func readScannerUsers(path string) ([]scannerUser, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []scannerUser
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		u := scannerUser{name: f[0], uid: -1}
		if len(f) > 1 {
			if n, err := strconv.Atoi(f[1]); err == nil {
				u.uid = n
			}
		}
		out = append(out, u)
	}
	return out, nil
}

func writeScannerUsers(path string, list []scannerUser) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	var b strings.Builder
	for _, u := range list {
		if u.uid >= 0 {
			fmt.Fprintf(&b, "%s %d\n", u.name, u.uid)
		} else {
			fmt.Fprintf(&b, "%s\n", u.name)
		}
	}
	return atomicfile.WriteFile(path, []byte(b.String()), 0o644)
}

// lookupUser resolves a user name (or uid) through ROOT/etc/passwd, then
// the system's user database.
func lookupUser(root, name string) (scannerUser, error) {
	if b, err := os.ReadFile(filepath.Join(root, "etc/passwd")); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Split(line, ":")
			if len(f) < 3 || (f[0] != name && f[2] != name) {
				continue
			}
			if uid, err := strconv.Atoi(f[2]); err == nil && userName.MatchString(f[0]) {
				return scannerUser{name: f[0], uid: uid}, nil
			}
		}
	}
	var u *user.User
	var err error
	if _, nerr := strconv.Atoi(name); nerr == nil {
		u, err = user.LookupId(name)
	} else {
		u, err = user.Lookup(name)
	}
	if err != nil {
		return scannerUser{}, fmt.Errorf("scanner user %q: no such user", name)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil || !userName.MatchString(u.Username) {
		return scannerUser{}, fmt.Errorf("scanner user %q: unusable name or uid", name)
	}
	return scannerUser{name: u.Username, uid: uid}, nil
}
