package server

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/kcare/kcare/internal/apitype"
	"github.com/kcare/kcare/internal/portal/resolve"
	"github.com/kcare/kcare/internal/portal/store"
)

// kcarePaths serves KernelCare's patch-server paths for existing tools:
//
//	GET /[PREFIX/]KERNEL_ID/version             newest level in main (404: none)
//	GET /[PREFIX/]KERNEL_ID/latest.v2           the same, as reporting tools read it
//	GET /[PREFIX/]KERNEL_ID/LEVEL/kpatch.info   that level's kpatch-* lines
func (s *Server) kcarePaths(w http.ResponseWriter, r *http.Request) error {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	prefix := ""
	if len(parts) > 0 && !apitype.KernelIDRE.MatchString(parts[0]) {
		prefix, parts = parts[0], parts[1:]
	}
	notFound := agentError(http.StatusNotFound, apitype.CodeNotFound, nil)
	if len(parts) < 2 || !apitype.KernelIDRE.MatchString(parts[0]) {
		return notFound
	}
	visible, newest, err := s.core.KernelCareLevels(r.Context(), parts[0], prefix)
	switch {
	case errors.Is(err, resolve.ErrBadPrefix):
		return notFound // an unknown PREFIX is no path of ours
	case errors.Is(err, store.ErrNotFound):
		return errorf(http.StatusNotFound, "unknown kernel")
	case err != nil:
		return err
	}
	switch {
	case len(parts) == 2 && (parts[1] == "version" || parts[1] == "latest.v2"):
		if newest == nil {
			return errorf(http.StatusNotFound, "no patches")
		}
		w.Header().Set("Content-Type", "text/plain")
		_, err := fmt.Fprintf(w, "%d\n", newest.Level)
		return err
	case len(parts) == 3 && parts[2] == "kpatch.info":
		n, err := strconv.Atoi(parts[1])
		if err != nil {
			return notFound
		}
		for _, l := range visible {
			if l.Level == n {
				w.Header().Set("Content-Type", "text/plain")
				_, err := w.Write([]byte(KpatchInfo(&l)))
				return err
			}
		}
		return errorf(http.StatusNotFound, "no such level")
	}
	return notFound
}

// KpatchInfo renders a level in KernelCare's kpatch.info format: one block
// of kpatch-* lines per fix.
func KpatchInfo(l *store.Level) string {
	var b strings.Builder
	fmt.Fprintf(&b, "kpatch-level: %d\nkpatch-kernel: %s\nkpatch-build-time: %s\nkpatch-effective-release: %s\n",
		l.Level, l.Release, l.Released.UTC().Format("2006-01-02T15:04:05Z"), l.EffectiveRelease)
	for _, c := range l.CVEs {
		fmt.Fprintf(&b, "\nkpatch-name: %s/%s\nkpatch-description: %s\nkpatch-kernel: %s\nkpatch-cve: %s\nkpatch-cve-url: %s\n",
			l.Release, c.ID, c.Description, l.Release, c.ID, c.URL)
	}
	return b.String()
}
