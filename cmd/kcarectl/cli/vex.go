package cli

import (
	"fmt"
	"io"
	"time"

	"github.com/openvex/go-vex/pkg/vex"

	"github.com/kcare/kcare/internal/agent"
)

// runVEX prints an OpenVEX document: one statement per CVE the applied
// level fixes, status fixed, for the running kernel's package. With
// nothing applied the document has no statements.
func runVEX(a *agent.Agent, stdout, stderr io.Writer) error {
	info, err := a.Info()
	if err != nil {
		return err
	}
	pkg := a.KernelPackage(info.Kernel.Release)
	if pkg.Type == "" {
		fmt.Fprintf(stderr, "kcarectl: no package database knows kernel %s; naming it %s\n", info.Kernel.Release, pkg.PURL())
	}
	now := time.Now().UTC().Truncate(time.Second)
	if a.Now != nil {
		now = a.Now().UTC().Truncate(time.Second)
	}
	doc := vex.New()
	doc.Author = "kcare"
	doc.AuthorRole = "live patching agent"
	doc.Tooling = "kcarectl " + Version
	doc.Timestamp = &now
	if info.State != "applied" {
		fmt.Fprintf(stderr, "kcarectl: no patches applied; the document has no statements\n")
	} else {
		product := pkg.PURL()
		applied := info.Applied
		if applied == nil {
			applied = &now
		}
		effective := info.EffectiveRelease
		if info.EffectiveVersion != "" {
			effective += " (package version " + info.EffectiveVersion + ")"
		}
		notes := fmt.Sprintf("Fixed in the running kernel's memory by kcare patch level %d (%s, livepatch %s), applied %s; effective release %s.",
			info.Level, info.Patch, info.Module, applied.UTC().Format(time.RFC3339), effective)
		for _, c := range info.CVEs {
			doc.Statements = append(doc.Statements, vex.Statement{
				Vulnerability: vex.Vulnerability{ID: c.URL, Name: vex.VulnerabilityID(c.ID), Description: c.Description},
				Timestamp:     applied,
				Products: []vex.Product{{Component: vex.Component{
					ID:          product,
					Identifiers: map[vex.IdentifierType]string{vex.PURL: product},
				}}},
				Status:      vex.StatusFixed,
				StatusNotes: notes,
			})
		}
	}
	if _, err := doc.GenerateCanonicalID(); err != nil {
		return fmt.Errorf("vex document id: %w", err)
	}
	return doc.ToJSON(stdout)
}
