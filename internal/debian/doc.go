// Package debian reaches Debian's archive for kernels: which kernel ABIs
// each family serves, complete (image, headers, common headers, kbuild),
// fetching one by release into a cache, and build roots of a Debian
// release for kernels built with a compiler the host lacks.
//
// It runs apt with a private configuration (APT_CONFIG): its own package
// lists and download cache under the cache directory, and its own sources
// list naming the suites of every family, on the mirrors the host's own
// apt sources name. So a site's mirror or proxy is honoured, no address is
// written into the code, and the host's apt state is never touched.
//
// Families:
//
//	bookworm-6.1   6.1.0-N-amd64            bookworm, bookworm-security      gcc-12
//	bookworm-6.12  6.12.N+deb12-amd64       bookworm-security, -backports    gcc-12, pahole
//	trixie-6.12    6.12.N+deb13[.M]-amd64   trixie, trixie-security          gcc-14
package debian
