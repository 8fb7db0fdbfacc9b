/*
 * libkcare_scanner.so - the kcare scanner interface.
 *
 * Loaded with LD_PRELOAD into the processes of a security scanner's user,
 * it shows them the effective kernel of a live-patched host: the kernel
 * release and version that carry the same fixes as the applied patch
 * level. For a user listed in /etc/sysconfig/kcare/scanner-users (and for
 * no one else, root never) while a level is applied:
 *
 *   - uname(2), and so `uname -r`, `uname -a` and anything calling uname(),
 *     report the effective release and version;
 *   - dpkg's status database, as any program opening it read-only sees it
 *     (dpkg-query -W, dpkg -l, dpkg -s, ...), carries the effective package
 *     version for the running kernel's image package;
 *   - rpm's queries (rpm -q, -qa, -qi, --qf ...) show the effective
 *     version-release for the running kernel's packages: librpm's
 *     showQueryPackage() is given a copy of the package header with
 *     VERSION and RELEASE replaced.
 *
 * Everything else passes through unchanged. The effective identity comes
 * from /var/lib/kcare/effective_version, which kcarectl writes when it
 * applies a level and removes on unload. It is trusted only while it
 * describes the running kernel: its build-id must equal the GNU build-id in
 * /sys/kernel/notes and its livepatch must be enabled in
 * /sys/kernel/livepatch/MODULE/enabled, the same test `kcarectl --info`
 * and kcare-uname make. A missing, unreadable or malformed file, or any
 * failure here, means no change at all.
 *
 * Tests only: KCARE_SCANNER_ROOT=DIR reads every kcare, /sys and dpkg path
 * above under DIR (not /etc/passwd). It is ignored in setuid programs; it
 * can only ever change what its own user's processes see.
 *
 * See docs/compliance.md.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/utsname.h>
#include <unistd.h>

#define EXPORT __attribute__((visibility("default")))

#define USERS_PATH "/etc/sysconfig/kcare/scanner-users"
#define EFFECTIVE_PATH "/var/lib/kcare/effective_version"
#define NOTES_PATH "/sys/kernel/notes"
#define LIVEPATCH_DIR "/sys/kernel/livepatch"
#define DPKG_STATUS_PATH "/var/lib/dpkg/status"
#define PASSWD_PATH "/etc/passwd"

#define MAX_SMALL_FILE (64 * 1024)
#define MAX_STATUS_FILE (256 * 1024 * 1024)

/* The effective identity, as kcarectl records it (see internal/agent). */
struct effective {
	char release[65];     /* uname -r */
	char version[65];     /* uname -v */
	char pkgver[128];     /* package version; "" for none */
	char krel[65];        /* the running kernel's own release */
	char buildid[129];    /* its GNU build-id, hex */
	char module[64];      /* the livepatch module */
};

/* ---- reading files without going through the interposed functions ---- */

static const char *root_prefix(void)
{
	const char *r = secure_getenv("KCARE_SCANNER_ROOT");
	return (r && r[0] == '/') ? r : "";
}

static int root_path(char *buf, size_t n, const char *path)
{
	int k = snprintf(buf, n, "%s%s", root_prefix(), path);
	return k > 0 && (size_t)k < n;
}

static int raw_open(const char *path)
{
	return (int)syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
}

/*
 * read_file reads all of path, at most max bytes, into a new NUL-terminated
 * buffer; NULL on any error or when the file is larger than max.
 */
static char *read_file(const char *path, size_t max, size_t *len)
{
	int fd = raw_open(path);
	if (fd < 0)
		return NULL;
	size_t cap = 4096, got = 0;
	char *buf = malloc(cap + 1);
	while (buf) {
		if (got == cap) {
			if (cap >= max) {
				free(buf);
				buf = NULL;
				break;
			}
			cap = cap * 2 > max ? max : cap * 2;
			char *nb = realloc(buf, cap + 1);
			if (!nb) {
				free(buf);
				buf = NULL;
				break;
			}
			buf = nb;
		}
		ssize_t r = read(fd, buf + got, cap - got);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			buf = NULL;
			break;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	close(fd);
	if (!buf)
		return NULL;
	buf[got] = '\0';
	if (len)
		*len = got;
	return buf;
}

/* ---- who is a scanner user ---- */

/* passwd_has reports whether /etc/passwd gives uid the name (len bytes). */
static int passwd_has(uid_t uid, const char *name, size_t len)
{
	char *pw = read_file(PASSWD_PATH, 16 * 1024 * 1024, NULL);
	if (!pw)
		return 0;
	int found = 0;
	for (char *line = pw; line && *line && !found;) {
		char *next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		char *c1 = strchr(line, ':');
		char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
		if (c2 && (size_t)(c1 - line) == len && memcmp(line, name, len) == 0) {
			char *end;
			unsigned long v = strtoul(c2 + 1, &end, 10);
			found = end != c2 + 1 && *end == ':' && v == (unsigned long)uid;
		}
		line = next;
	}
	free(pw);
	return found;
}

/*
 * scanner_user reports whether the real uid is listed in the scanner users
 * file: lines "NAME UID" (the uid decides) or "NAME" (looked up in
 * /etc/passwd). Root never is.
 */
static int scanner_user(void)
{
	uid_t uid = getuid();
	if (uid == 0)
		return 0;
	char path[4096];
	if (!root_path(path, sizeof path, USERS_PATH))
		return 0;
	char *users = read_file(path, MAX_SMALL_FILE, NULL);
	if (!users)
		return 0;
	int found = 0;
	for (char *line = users; line && *line && !found;) {
		char *next = strchr(line, '\n');
		if (next)
			*next++ = '\0';
		char *p = line;
		while (*p == ' ' || *p == '\t')
			p++;
		char *name = p;
		while (*p && *p != ' ' && *p != '\t')
			p++;
		size_t nlen = (size_t)(p - name);
		while (*p == ' ' || *p == '\t')
			p++;
		if (nlen == 0 || name[0] == '#') {
			line = next;
			continue;
		}
		if (isdigit((unsigned char)*p)) {
			char *end;
			unsigned long v = strtoul(p, &end, 10);
			if ((*end == '\0' || *end == ' ' || *end == '\t') && v == (unsigned long)uid && v != 0)
				found = 1;
		} else if (*p == '\0') {
			found = passwd_has(uid, name, nlen);
		}
		line = next;
	}
	free(users);
	return found;
}

/* ---- the effective identity and whether it holds ---- */

static int copy_line(char *dst, size_t n, const char *src, size_t len)
{
	if (len >= n)
		return 0;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)src[i] < 0x20 || src[i] == 0x7f)
			return 0;
	memcpy(dst, src, len);
	dst[len] = '\0';
	return 1;
}

static int parse_effective(char *text, struct effective *e)
{
	struct {
		char *dst;
		size_t n;
	} f[] = {
		{e->release, sizeof e->release}, {e->version, sizeof e->version},
		{e->pkgver, sizeof e->pkgver},   {e->krel, sizeof e->krel},
		{e->buildid, sizeof e->buildid}, {e->module, sizeof e->module},
	};
	char *p = text;
	for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) {
		char *nl = strchr(p, '\n');
		if (!nl || !copy_line(f[i].dst, f[i].n, p, (size_t)(nl - p)))
			return 0;
		p = nl + 1;
	}
	if (*p != '\0' || !e->release[0] || !e->krel[0] || !e->buildid[0] || !e->module[0])
		return 0;
	for (const char *c = e->module; *c; c++)
		if (!(islower((unsigned char)*c) || isdigit((unsigned char)*c) || *c == '_'))
			return 0;
	for (const char *c = e->buildid; *c; c++)
		if (!isxdigit((unsigned char)*c))
			return 0;
	return 1;
}

static uint32_t get32(const unsigned char *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return v;
}

/* notes_build_id finds the GNU build-id note in /sys/kernel/notes. */
static int notes_build_id(const unsigned char *p, size_t n, char *hex, size_t hexn)
{
	uint64_t off = 0;
	while (off + 12 <= n) {
		uint64_t namesz = get32(p + off), descsz = get32(p + off + 4);
		uint32_t type = get32(p + off + 8);
		uint64_t desc = off + 12 + ((namesz + 3) & ~(uint64_t)3);
		uint64_t next = desc + ((descsz + 3) & ~(uint64_t)3);
		if (desc + descsz > n)
			return 0;
		if (type == 3 && namesz == 4 && memcmp(p + off + 12, "GNU", 4) == 0) {
			if (descsz == 0 || descsz * 2 + 1 > hexn)
				return 0;
			for (uint64_t i = 0; i < descsz; i++)
				snprintf(hex + 2 * i, 3, "%02x", p[desc + i]);
			return 1;
		}
		off = next;
	}
	return 0;
}

/* holds reports whether e describes the running kernel with its patch enabled. */
static int holds(const struct effective *e)
{
	char path[4096], hex[129];
	size_t n;
	if (!root_path(path, sizeof path, NOTES_PATH))
		return 0;
	unsigned char *notes = (unsigned char *)read_file(path, MAX_SMALL_FILE, &n);
	if (!notes)
		return 0;
	int same = notes_build_id(notes, n, hex, sizeof hex);
	free(notes);
	if (!same || strcasecmp(hex, e->buildid) != 0)
		return 0;
	char rel[512];
	snprintf(rel, sizeof rel, LIVEPATCH_DIR "/%s/enabled", e->module);
	if (!root_path(path, sizeof path, rel))
		return 0;
	char *enabled = read_file(path, 64, NULL);
	int on = enabled && enabled[0] == '1';
	free(enabled);
	return on;
}

/*
 * load_effective fills e and reports whether this process should see the
 * effective kernel: a scanner user, a well-formed file that still holds.
 * errno is left as it was.
 */
static int load_effective(struct effective *e)
{
	int saved = errno;
	int ok = 0;
	char path[4096];
	if (scanner_user() && root_path(path, sizeof path, EFFECTIVE_PATH)) {
		char *text = read_file(path, 4096, NULL);
		if (text) {
			memset(e, 0, sizeof *e);
			ok = parse_effective(text, e) && holds(e);
			free(text);
		}
	}
	errno = saved;
	return ok;
}

/* ---- uname(2) ---- */

EXPORT int uname(struct utsname *buf)
{
	static int (*real)(struct utsname *);
	if (!real)
		real = (int (*)(struct utsname *))dlsym(RTLD_NEXT, "uname");
	int r = real ? real(buf) : (int)syscall(SYS_uname, buf);
	if (r != 0 || !buf)
		return r;
	struct effective e;
	if (load_effective(&e)) {
		snprintf(buf->release, sizeof buf->release, "%s", e.release);
		snprintf(buf->version, sizeof buf->version, "%s", e.version);
	}
	return r;
}

/* ---- dpkg's status database ---- */

struct outbuf {
	char *p;
	size_t len, cap;
	int failed;
};

static void put(struct outbuf *o, const char *s, size_t n)
{
	if (o->failed)
		return;
	if (o->len + n + 1 > o->cap) {
		size_t cap = (o->len + n + 1) * 2;
		char *np = realloc(o->p, cap);
		if (!np) {
			o->failed = 1;
			return;
		}
		o->p = np;
		o->cap = cap;
	}
	memcpy(o->p + o->len, s, n);
	o->len += n;
	o->p[o->len] = '\0';
}

static void puts_(struct outbuf *o, const char *s) { put(o, s, strlen(s)); }

/* field returns the value of "Name:" in a stanza's line, or NULL. */
static const char *field(const char *line, const char *eol, const char *name, size_t *vlen)
{
	size_t n = strlen(name);
	if ((size_t)(eol - line) < n + 1 || memcmp(line, name, n) != 0 || line[n] != ':')
		return NULL;
	const char *v = line + n + 1;
	while (v < eol && (*v == ' ' || *v == '\t'))
		v++;
	const char *end = eol;
	while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
		end--;
	*vlen = (size_t)(end - v);
	return v;
}

static int equal(const char *a, size_t alen, const char *b) { return strlen(b) == alen && memcmp(a, b, alen) == 0; }

/* signed_version turns a binary version into the linux-signed source's: the last '-' becomes '+'. */
static void signed_version(char *dst, size_t n, const char *v)
{
	snprintf(dst, n, "%s", v);
	char *dash = strrchr(dst, '-');
	if (dash)
		*dash = '+';
}

/* The packages of the running kernel's image in dpkg's database. */
struct debnames {
	char image[128], unsigned_[140], meta[128];
};

static void deb_names(const struct effective *e, struct debnames *d)
{
	snprintf(d->image, sizeof d->image, "linux-image-%s", e->krel);
	snprintf(d->unsigned_, sizeof d->unsigned_, "linux-image-%s-unsigned", e->krel);
	/* 6.1.0-56-cloud-amd64: the flavour after the ABI is cloud-amd64. */
	d->meta[0] = '\0';
	const char *dash1 = strchr(e->krel, '-');
	const char *dash2 = dash1 ? strchr(dash1 + 1, '-') : NULL;
	if (dash2 && dash2[1])
		snprintf(d->meta, sizeof d->meta, "linux-image-%s", dash2 + 1);
}

/*
 * rewrite_status copies dpkg's status text with the effective package
 * version in the stanzas of the running kernel's image (linux-image-REL,
 * its -unsigned build) and of its meta package (linux-image-FLAVOUR) when
 * that is at the same version. A "Source: NAME (VERSION)" field naming the
 * same version, or the signed source's form of it, follows. It reports
 * whether anything changed.
 */
static int rewrite_status(const char *in, size_t len, const struct effective *e, struct outbuf *o)
{
	struct debnames d;
	deb_names(e, &d);
	const char *end = in + len;
	char orig[128] = "";

	/* Pass 1: the image package's own version. */
	for (const char *s = in; s < end;) {
		const char *pkg = NULL, *ver = NULL;
		size_t pkglen = 0, verlen = 0;
		const char *line = s;
		while (line < end && *line != '\n') {
			const char *eol = memchr(line, '\n', (size_t)(end - line));
			if (!eol)
				eol = end;
			size_t n;
			const char *v;
			if ((v = field(line, eol, "Package", &n))) {
				pkg = v;
				pkglen = n;
			} else if ((v = field(line, eol, "Version", &n))) {
				ver = v;
				verlen = n;
			}
			line = eol < end ? eol + 1 : end;
		}
		if (pkg && ver && verlen < sizeof orig && (equal(pkg, pkglen, d.image) || (equal(pkg, pkglen, d.unsigned_) && !orig[0]))) {
			memcpy(orig, ver, verlen);
			orig[verlen] = '\0';
		}
		s = line < end ? line + 1 : end;
	}
	if (!orig[0])
		return 0;
	char orig_signed[128], eff_signed[128];
	signed_version(orig_signed, sizeof orig_signed, orig);
	signed_version(eff_signed, sizeof eff_signed, e->pkgver);

	/* Pass 2: copy, rewriting the target stanzas. */
	int changed = 0;
	for (const char *s = in; s < end;) {
		const char *stanza_end = s;
		const char *pkg = NULL, *ver = NULL;
		size_t pkglen = 0, verlen = 0;
		while (stanza_end < end && *stanza_end != '\n') {
			const char *eol = memchr(stanza_end, '\n', (size_t)(end - stanza_end));
			if (!eol)
				eol = end;
			size_t n;
			const char *v;
			if ((v = field(stanza_end, eol, "Package", &n))) {
				pkg = v;
				pkglen = n;
			} else if ((v = field(stanza_end, eol, "Version", &n))) {
				ver = v;
				verlen = n;
			}
			stanza_end = eol < end ? eol + 1 : end;
		}
		int target = pkg && ver && (equal(pkg, pkglen, d.image) || equal(pkg, pkglen, d.unsigned_) ||
					    (d.meta[0] && equal(pkg, pkglen, d.meta) && equal(ver, verlen, orig)));
		for (const char *line = s; line < stanza_end;) {
			const char *eol = memchr(line, '\n', (size_t)(stanza_end - line));
			const char *next = eol ? eol + 1 : stanza_end;
			if (!eol)
				eol = stanza_end;
			size_t n;
			const char *v;
			if (target && field(line, eol, "Version", &n)) {
				puts_(o, "Version: ");
				puts_(o, e->pkgver);
				put(o, "\n", 1);
				changed = 1;
			} else if (target && (v = field(line, eol, "Source", &n)) && n > 2 && v[n - 1] == ')' &&
				   memchr(v, '(', n)) {
				const char *open = memchr(v, '(', n);
				const char *sv = open + 1;
				size_t svlen = (size_t)(v + n - 1 - sv);
				const char *repl = equal(sv, svlen, orig) ? e->pkgver : equal(sv, svlen, orig_signed) ? eff_signed : NULL;
				if (repl) {
					put(o, line, (size_t)(sv - line));
					puts_(o, repl);
					puts_(o, ")\n");
				} else {
					put(o, line, (size_t)(next - line));
				}
			} else {
				put(o, line, (size_t)(next - line));
			}
			line = next;
		}
		if (stanza_end < end) {
			put(o, "\n", 1); /* the blank line after the stanza */
			s = stanza_end + 1;
		} else {
			s = end;
		}
	}
	return changed && !o->failed;
}

static int is_status_path(const char *path)
{
	char want[4096];
	return path && root_path(want, sizeof want, DPKG_STATUS_PATH) && strcmp(path, want) == 0;
}

static int read_only(int flags)
{
	return (flags & O_ACCMODE) == O_RDONLY && !(flags & (O_CREAT | O_TRUNC | O_DIRECTORY | O_PATH));
}

/*
 * status_fd returns a memory file holding the rewritten status database,
 * or -1 to let the caller open the real one. errno is left as it was.
 */
static int status_fd(const char *path, int flags)
{
	int saved = errno;
	int fd = -1;
	struct effective e;
	if (!load_effective(&e) || !e.pkgver[0])
		goto out;
	size_t len;
	char *in = read_file(path, MAX_STATUS_FILE, &len);
	if (!in)
		goto out;
	struct outbuf o = {0};
	if (rewrite_status(in, len, &e, &o)) {
		fd = memfd_create("dpkg-status", (flags & O_CLOEXEC) ? MFD_CLOEXEC : 0);
		for (size_t done = 0; fd >= 0 && done < o.len;) {
			ssize_t w = write(fd, o.p + done, o.len - done);
			if (w < 0 && errno == EINTR)
				continue;
			if (w <= 0) {
				close(fd);
				fd = -1;
				break;
			}
			done += (size_t)w;
		}
		if (fd >= 0 && lseek(fd, 0, SEEK_SET) != 0) {
			close(fd);
			fd = -1;
		}
	}
	free(o.p);
	free(in);
out:
	errno = saved;
	return fd;
}

static int maybe_status(const char *path, int flags)
{
	if (!read_only(flags) || !is_status_path(path))
		return -1;
	return status_fd(path, flags);
}

/* maybe_status_at is maybe_status for openat: only an absolute path can
 * name the status file whatever the directory. */
static int maybe_status_at(const char *path, int flags)
{
	return path && path[0] == '/' ? maybe_status(path, flags) : -1;
}

#define NEXT(name, type) \
	static __typeof__(type) real_##name; \
	if (!real_##name) \
		real_##name = (type)dlsym(RTLD_NEXT, #name)

static mode_t open_mode(int flags, va_list ap)
{
	return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

EXPORT int open(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int fd = maybe_status(path, flags);
	if (fd >= 0)
		return fd;
	NEXT(open, int (*)(const char *, int, ...));
	if (!real_open)
		return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
	return real_open(path, flags, mode);
}

EXPORT int open64(const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int fd = maybe_status(path, flags);
	if (fd >= 0)
		return fd;
	NEXT(open64, int (*)(const char *, int, ...));
	if (!real_open64)
		return (int)syscall(SYS_openat, AT_FDCWD, path, flags, mode);
	return real_open64(path, flags, mode);
}

EXPORT int openat(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int fd = maybe_status_at(path, flags);
	if (fd >= 0)
		return fd;
	NEXT(openat, int (*)(int, const char *, int, ...));
	if (!real_openat)
		return (int)syscall(SYS_openat, dirfd, path, flags, mode);
	return real_openat(dirfd, path, flags, mode);
}

EXPORT int openat64(int dirfd, const char *path, int flags, ...)
{
	va_list ap;
	va_start(ap, flags);
	mode_t mode = open_mode(flags, ap);
	va_end(ap);
	int fd = maybe_status_at(path, flags);
	if (fd >= 0)
		return fd;
	NEXT(openat64, int (*)(int, const char *, int, ...));
	if (!real_openat64)
		return (int)syscall(SYS_openat, dirfd, path, flags, mode);
	return real_openat64(dirfd, path, flags, mode);
}

/* The _FORTIFY_SOURCE entry points of open and openat. */
EXPORT int __open_2(const char *path, int flags)
{
	int fd = maybe_status(path, flags);
	if (fd >= 0)
		return fd;
	NEXT(__open_2, int (*)(const char *, int));
	return real___open_2 ? real___open_2(path, flags) : (int)syscall(SYS_openat, AT_FDCWD, path, flags);
}

EXPORT int __open64_2(const char *path, int flags)
{
	int fd = maybe_status(path, flags);
	if (fd >= 0)
		return fd;
	NEXT(__open64_2, int (*)(const char *, int));
	return real___open64_2 ? real___open64_2(path, flags) : (int)syscall(SYS_openat, AT_FDCWD, path, flags);
}

EXPORT int __openat_2(int dirfd, const char *path, int flags)
{
	int fd = maybe_status_at(path, flags);
	if (fd >= 0)
		return fd;
	NEXT(__openat_2, int (*)(int, const char *, int));
	return real___openat_2 ? real___openat_2(dirfd, path, flags) : (int)syscall(SYS_openat, dirfd, path, flags);
}

EXPORT int __openat64_2(int dirfd, const char *path, int flags)
{
	int fd = maybe_status_at(path, flags);
	if (fd >= 0)
		return fd;
	NEXT(__openat64_2, int (*)(int, const char *, int));
	return real___openat64_2 ? real___openat64_2(dirfd, path, flags) : (int)syscall(SYS_openat, dirfd, path, flags);
}

static FILE *status_fopen(const char *path, const char *mode)
{
	if (!path || !mode || mode[0] != 'r' || strchr(mode, '+') || !is_status_path(path))
		return NULL;
	int fd = status_fd(path, strchr(mode, 'e') ? O_CLOEXEC : 0);
	if (fd < 0)
		return NULL;
	int saved = errno;
	FILE *f = fdopen(fd, "r");
	if (!f)
		close(fd);
	errno = saved;
	return f;
}

EXPORT FILE *fopen(const char *path, const char *mode)
{
	FILE *f = status_fopen(path, mode);
	if (f)
		return f;
	NEXT(fopen, FILE * (*)(const char *, const char *));
	if (!real_fopen) {
		errno = ENOSYS;
		return NULL;
	}
	return real_fopen(path, mode);
}

EXPORT FILE *fopen64(const char *path, const char *mode)
{
	FILE *f = status_fopen(path, mode);
	if (f)
		return f;
	NEXT(fopen64, FILE * (*)(const char *, const char *));
	if (!real_fopen64) {
		errno = ENOSYS;
		return NULL;
	}
	return real_fopen64(path, mode);
}

/* ---- rpm ---- */

/* librpm's API, found at run time: this library never links against it. */
typedef void *Header;
enum { RPMTAG_NAME = 1000, RPMTAG_VERSION = 1001, RPMTAG_RELEASE = 1002, RPMTAG_ARCH = 1022 };

struct rpmapi {
	const char *(*get_string)(Header, int32_t);
	int (*put_string)(Header, int32_t, const char *);
	int (*del)(Header, int32_t);
	Header (*copy)(Header);
	Header (*free)(Header);
};

static int rpm_api(struct rpmapi *api)
{
	api->get_string = (const char *(*)(Header, int32_t))dlsym(RTLD_DEFAULT, "headerGetString");
	api->put_string = (int (*)(Header, int32_t, const char *))dlsym(RTLD_DEFAULT, "headerPutString");
	api->del = (int (*)(Header, int32_t))dlsym(RTLD_DEFAULT, "headerDel");
	api->copy = (Header(*)(Header))dlsym(RTLD_DEFAULT, "headerCopy");
	api->free = (Header(*)(Header))dlsym(RTLD_DEFAULT, "headerFree");
	return api->get_string && api->put_string && api->del && api->copy && api->free;
}

static int ends_with(const char *s, const char *suffix)
{
	size_t n = strlen(s), m = strlen(suffix);
	return n >= m && strcmp(s + n - m, suffix) == 0;
}

/*
 * kernel_package reports whether name is a kernel image package: kernel,
 * kernel-core, kernel-modules*, kernel-uek, kernel-rt-core, ...; not the
 * headers, sources, tools or documentation that share its version.
 */
static int kernel_package(const char *name)
{
	static const char *not_image[] = {"-devel", "-headers", "-tools", "-tools-libs", "-tools-libs-devel", "-doc",
					  "-debuginfo", "-debuginfo-common", "-abi-stablelists", "-abi-whitelists",
					  "-srpm-macros", "-cross-headers", "-devel-matched", NULL};
	if (strcmp(name, "kernel") == 0)
		return 1;
	if (strncmp(name, "kernel-", 7) != 0)
		return 0;
	for (int i = 0; not_image[i]; i++)
		if (ends_with(name, not_image[i]))
			return 0;
	return 1;
}

/*
 * kernel_header_copy returns a copy of h with the effective VERSION and
 * RELEASE when h is the running kernel's package (VERSION-RELEASE.ARCH or
 * VERSION-RELEASE equal to its release) and a level is applied, else NULL.
 */
static Header kernel_header_copy(Header h, struct rpmapi *api)
{
	struct effective e;
	if (!h || !load_effective(&e) || !e.pkgver[0] || !rpm_api(api))
		return NULL;
	const char *name = api->get_string(h, RPMTAG_NAME);
	const char *ver = api->get_string(h, RPMTAG_VERSION);
	const char *rel = api->get_string(h, RPMTAG_RELEASE);
	const char *arch = api->get_string(h, RPMTAG_ARCH);
	if (!name || !ver || !rel || !kernel_package(name))
		return NULL;
	char vr[256], vra[320];
	snprintf(vr, sizeof vr, "%s-%s", ver, rel);
	snprintf(vra, sizeof vra, "%s.%s", vr, arch ? arch : "");
	if (strcmp(vra, e.krel) != 0 && strcmp(vr, e.krel) != 0)
		return NULL;
	/* The effective version is [EPOCH:]VERSION-RELEASE; the epoch stays. */
	char want[128];
	const char *p = e.pkgver;
	const char *colon = strchr(p, ':');
	if (colon) {
		const char *c = p;
		while (c < colon && isdigit((unsigned char)*c))
			c++;
		if (c == colon && c > p)
			p = colon + 1;
	}
	snprintf(want, sizeof want, "%s", p);
	char *dash = strchr(want, '-');
	if (!dash || dash == want || !dash[1] || strchr(dash + 1, '-'))
		return NULL;
	*dash = '\0';
	Header c = api->copy(h);
	if (!c)
		return NULL;
	api->del(c, RPMTAG_VERSION);
	api->del(c, RPMTAG_RELEASE);
	if (!api->put_string(c, RPMTAG_VERSION, want) || !api->put_string(c, RPMTAG_RELEASE, dash + 1)) {
		api->free(c);
		return NULL;
	}
	return c;
}

/* librpm's query printer: rpm -q, -qa, -qi, --qf all go through it. */
EXPORT int showQueryPackage(void *qva, void *ts, Header h)
{
	NEXT(showQueryPackage, int (*)(void *, void *, Header));
	if (!real_showQueryPackage)
		return 1;
	int saved = errno;
	struct rpmapi api;
	Header c = kernel_header_copy(h, &api);
	errno = saved;
	if (!c)
		return real_showQueryPackage(qva, ts, h);
	int r = real_showQueryPackage(qva, ts, c);
	api.free(c);
	return r;
}
