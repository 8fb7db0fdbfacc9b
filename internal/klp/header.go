package klp

import _ "embed"

// Header is kcare/klp.h, the C header of the markers Convert reads
// (KCARE_SYMPOS, KCARE_SYMPOS_OBJ). kcare-build module writes it beside
// the sources it builds.
//
//go:embed include/kcare/klp.h
var Header []byte

// HeaderPath is where Header goes, relative to the build directory.
const HeaderPath = "kcare/klp.h"
