package analyze

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
)

// BuildFlags are added to the kernel's own compiler flags for every
// object analyze builds: one section per function and per variable, so
// each function's code and relocations stand alone.
const BuildFlags = "-ffunction-sections -fdata-sections"

// BuildObject builds one object of the tree (kernel/time/namespace.o) with
// the kernel's flags and BuildFlags, and returns it.
func (s *Source) BuildObject(ctx context.Context, obj string) ([]byte, error) {
	if err := checkTreePath(obj); err != nil {
		return nil, err
	}
	out := filepath.Join(s.Dir, obj)
	os.Remove(out) // always compile: the sources may have gone back and forth
	jobs := "-j" + strconv.Itoa(runtime.NumCPU())
	if _, err := run(ctx, s.Dir, "make", jobs, "CC="+s.CC, "KCFLAGS="+BuildFlags, obj); err != nil {
		return nil, fmt.Errorf("build %s: %w", obj, err)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("build %s: %w", obj, err)
	}
	return data, nil
}

// klpObject is the livepatch object an object of the tree ends up in:
// "vmlinux", or the module's name, as kbuild compiled it (-DMODULE and
// KBUILD_MODNAME in its .cmd file).
func (s *Source) klpObject(obj string) (string, error) {
	cmd, err := os.ReadFile(filepath.Join(s.Dir, filepath.Dir(obj), "."+filepath.Base(obj)+".cmd"))
	if err != nil {
		return "", fmt.Errorf("how %s was built: %w", obj, err)
	}
	line, _, _ := bytes.Cut(cmd, []byte("\n"))
	if !bytes.Contains(line, []byte("-DMODULE ")) {
		return "vmlinux", nil
	}
	m := regexp.MustCompile(`-DKBUILD_MODNAME='"([^"]+)"'`).FindSubmatch(line)
	if m == nil {
		return "", fmt.Errorf("how %s was built: a module object without KBUILD_MODNAME", obj)
	}
	return strings.ReplaceAll(string(m[1]), "-", "_"), nil
}

func checkTreePath(p string) error {
	if p == "" || filepath.IsAbs(p) || strings.HasPrefix(filepath.Clean(p), "..") || strings.HasPrefix(p, "-") {
		return fmt.Errorf("%q is not a path inside the kernel tree", p)
	}
	return nil
}

// ErrDoesNotApply means the patch does not apply to the kernel's source.
var ErrDoesNotApply = errors.New("the patch does not apply")

// journalName holds the original contents of the files a patch changes,
// while the patch is applied, so a run that dies midway is undone by the
// next one.
const journalName = ".kcare-analyze-journal.json"

type journal struct {
	Files map[string][]byte `json:"files"` // path in the tree -> contents; nil if it did not exist
}

// recoverTree puts back the files of an interrupted patched build.
func (s *Source) recoverTree() error {
	data, err := os.ReadFile(filepath.Join(s.Dir, journalName))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var j journal
	if err := json.Unmarshal(data, &j); err != nil {
		return fmt.Errorf("read %s: %w", journalName, err)
	}
	for p, content := range j.Files {
		full := filepath.Join(s.Dir, p)
		if content == nil {
			if err := os.Remove(full); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			continue
		}
		if err := os.WriteFile(full, content, 0o644); err != nil {
			return err
		}
	}
	return os.Remove(filepath.Join(s.Dir, journalName))
}

// withPatch applies patch (-p1) to the tree, runs fn, and puts the tree
// back as it was, even when fn fails.
func (s *Source) withPatch(ctx context.Context, patch []byte, files []string, fn func() error) (err error) {
	if err := s.recoverTree(); err != nil {
		return fmt.Errorf("restore the tree after an interrupted run: %w", err)
	}
	j := journal{Files: map[string][]byte{}}
	for _, f := range files {
		if err := checkTreePath(f); err != nil {
			return err
		}
		data, err := os.ReadFile(filepath.Join(s.Dir, f))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		j.Files[f] = data
	}
	data, err := json.Marshal(j)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(s.Dir, journalName), data, 0o644); err != nil {
		return err
	}
	defer func() {
		if rerr := s.recoverTree(); rerr != nil && err == nil {
			err = fmt.Errorf("restore the tree: %w", rerr)
		}
	}()
	cmd := exec.CommandContext(ctx, "patch", "-p1", "--batch", "--forward", "--no-backup-if-mismatch", "-r", "-", "-d", s.Dir)
	cmd.Stdin = bytes.NewReader(patch)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%w: %s (%s): %s", ErrDoesNotApply, s.Release, s.Version, strings.TrimSpace(string(out)))
	}
	return fn()
}
