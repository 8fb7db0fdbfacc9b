package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/openvex/go-vex/pkg/vex"
	"github.com/package-url/packageurl-go"

	"github.com/kcare/kcare/internal/portal/store"
)

// rpmRelease matches the release of a Red Hat family kernel, which names
// its package's VERSION-RELEASE and ARCH: 5.14.0-427.13.1.el9_4.x86_64.
var rpmRelease = regexp.MustCompile(`^([0-9][^-\s]*-[^-\s]*\.(?:el|fc|amzn)[0-9][^-\s]*)\.(x86_64|aarch64|ppc64le|s390x)$`)

// kernelPURL names a server's kernel package from its release alone: the
// portal knows nothing else of the server's packages. A Red Hat family
// release names its package's version (pkg:rpm/redhat/kernel@VR?arch=A);
// any other is taken as a Debian kernel, whose image package is named by
// the release but whose version is not known
// (pkg:deb/debian/linux-image-RELEASE). kcarectl --vex on the server
// itself names the installed package exactly.
func kernelPURL(release string) string {
	if m := rpmRelease.FindStringSubmatch(release); m != nil {
		return packageurl.NewPackageURL("rpm", "redhat", "kernel", m[1],
			packageurl.Qualifiers{{Key: "arch", Value: m[2]}}, "").ToString()
	}
	return packageurl.NewPackageURL("deb", "debian", "linux-image-"+release, "", nil, "").ToString()
}

// serverVEX serves GET /admin/api/servers/{id}/vex: an OpenVEX document
// with one statement per CVE fixed by the level the server last reported,
// status fixed, for its kernel package, as kcarectl --vex prints on the
// server. A server with no level applied gets a document with no
// statements.
func (s *Server) serverVEX(w http.ResponseWriter, r *http.Request) error {
	srv, err := s.core.Server(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	now := s.now().Truncate(time.Second)
	doc := vex.New()
	doc.Author = "eportal"
	doc.AuthorRole = "live patching portal"
	doc.Tooling = "eportal"
	doc.Timestamp = &now
	lv, err := s.core.ServerLevel(r.Context(), srv)
	if err != nil {
		return err
	}
	if lv != nil {
		doc.Statements = levelStatements(srv, lv)
	}
	if _, err := doc.GenerateCanonicalID(); err != nil {
		return fmt.Errorf("vex document id: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	return doc.ToJSON(w)
}

func levelStatements(srv *store.Server, lv *store.Level) []vex.Statement {
	product := kernelPURL(srv.Release)
	var m struct {
		EffectiveVersion string `json:"effective_version"`
	}
	json.Unmarshal(lv.Manifest, &m) // published manifests are valid; a missing field stays ""
	effective := srv.EffectiveRelease
	if effective == "" {
		effective = lv.EffectiveRelease
	}
	if m.EffectiveVersion != "" {
		effective += " (package version " + m.EffectiveVersion + ")"
	}
	at := srv.LastCheckin.UTC().Truncate(time.Second)
	notes := fmt.Sprintf("Fixed in the running kernel's memory by kcare patch level %d (patchset %s, bundle sha256 %s), last reported by server %s at %s; effective release %s.",
		lv.Level, lv.Patchset, lv.Digest, srv.ID, at.Format(time.RFC3339), effective)
	out := []vex.Statement{}
	for _, c := range lv.CVEs {
		out = append(out, vex.Statement{
			Vulnerability: vex.Vulnerability{ID: c.URL, Name: vex.VulnerabilityID(c.ID), Description: c.Description},
			Timestamp:     &at,
			Products: []vex.Product{{Component: vex.Component{
				ID:          product,
				Identifiers: map[vex.IdentifierType]string{vex.PURL: product},
			}}},
			Status:      vex.StatusFixed,
			StatusNotes: notes,
		})
	}
	return out
}
