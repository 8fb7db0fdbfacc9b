package analyze

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteText writes the analysis as a table for a person: every function
// whose code differs, what a livepatch must replace, and the notes.
func (a *Analysis) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s (Debian %s), patch %s, built with %s %s\n\n", a.Kernel.Release, a.Kernel.Version, a.Patch.File, a.Compiler, a.Flags)
	tw := tabwriter.NewWriter(&b, 0, 8, 2, ' ', 0)
	fmt.Fprintln(tw, "OBJECT\tKLP OBJECT\tSYMBOL\tCHANGE\tWHY")
	n := 0
	for _, o := range a.Objects {
		for _, f := range o.Functions {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", o.Object, o.KlpObject, f.Symbol, f.Change, f.Why)
			n++
		}
	}
	tw.Flush()
	if n == 0 {
		b.WriteString("(no function's code differs)\n")
	}
	b.WriteString("\nthe livepatch must replace (klp_object: klp_func old_name):\n")
	for _, t := range a.Replace {
		fmt.Fprintf(&b, "  %s: %s\n", t.Object, t.Function)
	}
	if len(a.Replace) == 0 {
		b.WriteString("  nothing\n")
	}
	if len(a.Notes) > 0 {
		b.WriteString("\nnotes:\n")
		for _, n := range a.Notes {
			fmt.Fprintf(&b, "  - %s\n", n)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}
