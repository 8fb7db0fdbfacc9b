package config

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/kcare/kcare/internal/atomicfile"
)

// MaxSize is the largest configuration file Load reads.
const MaxSize = 1 << 20

// ErrTooLarge is returned by Load for a file larger than MaxSize.
var ErrTooLarge = errors.New("larger than 1 MiB")

// A File is a parsed kcare.conf. It keeps every line as written, so that
// Bytes returns the input unchanged until Set or Unset edits it, and then
// changes only the lines they touch.
//
// The zero File is an empty file. A File is not safe for concurrent use.
type File struct {
	lines []line
}

// line is one line of a File.
type line struct {
	text string // as written, without its ending
	eol  string // "\n" or "\r\n", or for the last line also "\r" or ""

	// For an assignment, key is its name, value its value with the quotes
	// removed, and text[start:end] the value as written.
	key        string
	value      string
	start, end int
}

// A SyntaxError reports a line that is not blank, a comment or an assignment.
type SyntaxError struct {
	Line int // 1-based
	Msg  string
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
}

// Parse parses the contents of a kcare.conf.
//
// Each line is blank, a comment starting with '#', or an assignment
// KEY=VALUE, optionally preceded by "export ". KEY is a shell name. VALUE is
// one shell word built of bare text, 'single-quoted' text and
// "double-quoted" text; it may be followed by blanks and a comment. As in a
// shell, a backslash outside quotes takes the next character literally, and
// inside double quotes it escapes only '"', '\', '$' and '`'. Unlike a shell,
// Parse expands nothing: '$' and '`' are taken literally. Values cannot span
// lines.
//
// A "\r\n" line ending, or a "\r" ending the last line, is accepted and
// kept; the "\r" is not part of the line.
func Parse(data []byte) (*File, error) {
	f := &File{}
	s := string(data)
	for n := 1; s != ""; n++ {
		var l line
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			l.text, l.eol, s = s[:i], "\n", s[i+1:]
		} else {
			l.text, s = s, ""
		}
		if strings.HasSuffix(l.text, "\r") {
			l.text, l.eol = l.text[:len(l.text)-1], "\r"+l.eol
		}
		if err := parseLine(&l); err != nil {
			return nil, &SyntaxError{Line: n, Msg: err.Error()}
		}
		f.lines = append(f.lines, l)
	}
	return f, nil
}

// parseLine fills in the assignment fields of l from l.text.
func parseLine(l *line) error {
	t := l.text
	i := skipBlanks(t, 0)
	if i == len(t) || t[i] == '#' {
		return nil
	}
	if rest := t[i:]; strings.HasPrefix(rest, "export") && len(rest) > len("export") && isBlank(rest[len("export")]) {
		i = skipBlanks(t, i+len("export"))
	}
	k := i
	for k < len(t) && isNameByte(t[k], k == i) {
		k++
	}
	if k == i || k == len(t) || t[k] != '=' {
		return fmt.Errorf("want KEY=VALUE or a comment, got %q", excerpt(t))
	}
	key := t[i:k]
	start := k + 1
	value, end, err := parseValue(t, start)
	if err != nil {
		return fmt.Errorf("value of %s: %v", key, err)
	}
	if j := skipBlanks(t, end); j < len(t) && t[j] != '#' {
		return fmt.Errorf("value of %s: unexpected %q after the value (quote a value that contains blanks)", key, excerpt(t[end:]))
	}
	l.key, l.value, l.start, l.end = key, value, start, end
	return nil
}

// parseValue reads the shell word starting at t[i] and returns its value
// and the index just past it.
func parseValue(t string, i int) (string, int, error) {
	var b strings.Builder
	for i < len(t) {
		switch c := t[i]; {
		case isBlank(c):
			return b.String(), i, nil
		case c == '\'':
			j := strings.IndexByte(t[i+1:], '\'')
			if j < 0 {
				return "", 0, errors.New("unterminated single quote")
			}
			b.WriteString(t[i+1 : i+1+j])
			i += j + 2
		case c == '"':
			i++
			for {
				if i == len(t) {
					return "", 0, errors.New("unterminated double quote")
				}
				c := t[i]
				if c == '"' {
					i++
					break
				}
				if c == '\\' && i+1 < len(t) && strings.IndexByte("\"\\$`", t[i+1]) >= 0 {
					i++
					c = t[i]
				}
				b.WriteByte(c)
				i++
			}
		case c == '\\':
			if i+1 == len(t) {
				return "", 0, errors.New("backslash at end of line (values cannot span lines)")
			}
			b.WriteByte(t[i+1])
			i += 2
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), i, nil
}

// Load reads and parses the file at path. A missing file is an empty File.
func Load(path string) (*File, error) {
	fd, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &File{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer fd.Close()
	data, err := io.ReadAll(io.LimitReader(fd, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("read config %s: %w", path, ErrTooLarge)
	}
	f, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("parse config %s: %w", path, err)
	}
	return f, nil
}

// Get returns the value of the last assignment of key, as a shell would,
// and reports whether there is one.
func (f *File) Get(key string) (string, bool) {
	if i := f.last(key); i >= 0 {
		return f.lines[i].value, true
	}
	return "", false
}

// first returns the index of the first assignment of key, or -1.
func (f *File) first(key string) int {
	for i, l := range f.lines {
		if l.key == key && key != "" {
			return i
		}
	}
	return -1
}

// last returns the index of the last assignment of key, or -1.
func (f *File) last(key string) int {
	for i := len(f.lines) - 1; i >= 0; i-- {
		if f.lines[i].key == key && key != "" {
			return i
		}
	}
	return -1
}

// Set makes key's value value. If key is assigned, Set rewrites the value of
// its last assignment in place, keeping the rest of that line (an "export",
// a trailing comment); setting the value it already has changes nothing.
// Otherwise Set appends KEY=VALUE as a new last line. The value is quoted
// only when it needs to be, in a form that Parse and a shell read back as
// value.
//
// Set panics if key is not a valid key or value is not a valid value (see
// ValidKey and ValidValue); check input from users first.
func (f *File) Set(key, value string) {
	if !ValidKey(key) {
		panic(fmt.Sprintf("config: Set with invalid key %q", key))
	}
	if !ValidValue(value) {
		panic(fmt.Sprintf("config: Set %s with a value containing a newline or NUL", key))
	}
	word := quote(value)
	if i := f.last(key); i >= 0 {
		l := &f.lines[i]
		if l.value == value {
			return
		}
		l.text = l.text[:l.start] + word + l.text[l.end:]
		l.value, l.end = value, l.start+len(word)
		return
	}
	// End the new line, and a last line that has no newline, the way the
	// file's last line with a newline is ended.
	eol := "\n"
	for i := len(f.lines) - 1; i >= 0; i-- {
		if strings.HasSuffix(f.lines[i].eol, "\n") {
			eol = f.lines[i].eol
			break
		}
	}
	if n := len(f.lines); n > 0 {
		switch last := &f.lines[n-1]; last.eol {
		case "":
			last.eol = eol
		case "\r":
			last.eol = "\r\n"
		}
		eol = f.lines[n-1].eol
	}
	f.lines = append(f.lines, line{
		text:  key + "=" + word,
		eol:   eol,
		key:   key,
		value: value,
		start: len(key) + 1,
		end:   len(key) + 1 + len(word),
	})
}

// Unset removes every assignment of key, with any comment on the same line.
func (f *File) Unset(key string) {
	kept := f.lines[:0]
	for _, l := range f.lines {
		if l.key != key || key == "" {
			kept = append(kept, l)
		}
	}
	clear(f.lines[len(kept):])
	f.lines = kept
}

// Keys returns the assigned keys in the order they first appear.
func (f *File) Keys() []string {
	var keys []string
	seen := make(map[string]bool)
	for _, l := range f.lines {
		if l.key != "" && !seen[l.key] {
			seen[l.key] = true
			keys = append(keys, l.key)
		}
	}
	return keys
}

// Bytes returns the file's contents: the parsed input, byte for byte, with
// the edits made by Set and Unset.
func (f *File) Bytes() []byte {
	var b strings.Builder
	for _, l := range f.lines {
		b.WriteString(l.text)
		b.WriteString(l.eol)
	}
	return []byte(b.String())
}

// Save writes the file to path with permissions perm, atomically (see
// atomicfile.WriteFile): path holds either the old contents or the new
// ones, even after a crash, and neither a symbolic link at path nor one
// planted at a temporary name is followed.
func (f *File) Save(path string, perm os.FileMode) error {
	if err := atomicfile.WriteFile(path, f.Bytes(), perm); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	return nil
}

// ValidKey reports whether key can be assigned in a File: a letter or '_'
// followed by letters, digits and '_'.
func ValidKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if !isNameByte(key[i], i == 0) {
			return false
		}
	}
	return key != ""
}

// ValidValue reports whether value can be written in a File: it must not
// contain a newline or a NUL byte.
func ValidValue(value string) bool {
	return !strings.ContainsAny(value, "\n\x00")
}

// quote returns value as a shell word: bare when every byte is safe there,
// in single quotes when value has no single quote, else in double quotes.
func quote(value string) string {
	if value == "" {
		return `""`
	}
	bare := true
	for i := 0; i < len(value); i++ {
		if !isBareByte(value[i]) {
			bare = false
			break
		}
	}
	if bare {
		return value
	}
	if !strings.Contains(value, "'") {
		return "'" + value + "'"
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(value); i++ {
		if strings.IndexByte("\"\\$`", value[i]) >= 0 {
			b.WriteByte('\\')
		}
		b.WriteByte(value[i])
	}
	b.WriteByte('"')
	return b.String()
}

// isBareByte reports whether c means itself unquoted anywhere in a shell word.
func isBareByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		strings.IndexByte("%+,-./:=@_", c) >= 0
}

// isNameByte reports whether c can appear in a key, at its start if first.
func isNameByte(c byte, first bool) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '_' || !first && '0' <= c && c <= '9'
}

func isBlank(c byte) bool { return c == ' ' || c == '\t' }

func skipBlanks(t string, i int) int {
	for i < len(t) && isBlank(t[i]) {
		i++
	}
	return i
}

// excerpt shortens s for an error message.
func excerpt(s string) string {
	const max = 40
	if len(s) > max {
		return s[:max] + "..."
	}
	return s
}
