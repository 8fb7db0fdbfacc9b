package klp

import (
	_ "embed"
	"fmt"
	"strings"
)

// Header is kcare/klp.h, the C header of the markers Convert reads
// (KCARE_SYMPOS, KCARE_SYMPOS_OBJ) and of KCARE_LIVEPATCH. kcare-build
// module writes it beside the sources it builds.
//
//go:embed include/kcare/klp.h
var Header []byte

// HeaderPath is where Header goes, relative to the build directory.
const HeaderPath = "kcare/klp.h"

//go:embed include/kcare_level.c
var levelCore []byte

// PartDefine is the define that builds the n-th source (from 1) of a
// cumulative level as a part: KCARE_PART=kcare_part_1.
func PartDefine(n int) string { return fmt.Sprintf("KCARE_PART=kcare_part_%d", n) }

// LevelFiles are the files that make n livepatch sources, each built
// with PartDefine, into one cumulative patch: kcare_level.c, which merges
// the parts' klp_objects into one klp_patch, and the list of parts it
// includes.
func LevelFiles(n int) map[string][]byte {
	var b strings.Builder
	b.WriteString("/* The parts of this level, written by kcare-build module. */\n#define KCARE_PARTS(X)")
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, " X(kcare_part_%d)", i)
	}
	b.WriteString("\n")
	return map[string][]byte{
		"kcare_level.c": levelCore,
		"kcare_parts.h": []byte(b.String()),
		HeaderPath:      Header,
	}
}
