package analyze

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// FilePatch is what a unified diff changes in one file.
type FilePatch struct {
	Path string // in the tree, "fs/namei.c" (the b/ side, -p1)
	// Lines are the lines of the patched file that the patch adds, or
	// before which it deletes, counting from 1.
	Lines []int
}

// ErrBadPatch means the patch is not a unified diff analyze can read.
var ErrBadPatch = errors.New("not a unified diff")

var hunkHeader = regexp.MustCompile(`^@@ -[0-9]+(?:,([0-9]+))? \+([0-9]+)(?:,([0-9]+))? @@`)

// ParsePatch reads a unified diff (git or diff -u, paths with one leading
// component, as patch -p1 takes them) and returns the files it changes.
func ParsePatch(data []byte) ([]FilePatch, error) {
	var files []FilePatch
	var cur *FilePatch
	var newLine, oldLeft, newLeft int
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		if oldLeft > 0 || newLeft > 0 {
			switch {
			case strings.HasPrefix(line, "+"):
				cur.Lines = append(cur.Lines, newLine)
				newLine++
				newLeft--
			case strings.HasPrefix(line, "-"):
				cur.Lines = append(cur.Lines, newLine)
				oldLeft--
			case strings.HasPrefix(line, " ") || line == "":
				newLine++
				oldLeft--
				newLeft--
			case strings.HasPrefix(line, `\`): // "\ No newline at end of file"
			default:
				return nil, fmt.Errorf("%w: line %d: hunk ends early", ErrBadPatch, n)
			}
			continue
		}
		switch {
		case strings.HasPrefix(line, "+++ "):
			p := strings.TrimPrefix(line, "+++ ")
			if i := strings.IndexByte(p, '\t'); i >= 0 {
				p = p[:i]
			}
			p = strings.TrimSpace(p)
			if p == "/dev/null" {
				return nil, fmt.Errorf("%w: line %d: the patch deletes a file", ErrBadPatch, n)
			}
			_, rest, ok := strings.Cut(p, "/")
			if !ok || rest == "" || strings.Contains("/"+rest+"/", "/../") {
				return nil, fmt.Errorf("%w: line %d: path %q is not a/… or b/… inside the tree", ErrBadPatch, n, p)
			}
			files = append(files, FilePatch{Path: rest})
			cur = &files[len(files)-1]
		case strings.HasPrefix(line, "@@"):
			m := hunkHeader.FindStringSubmatch(line)
			if m == nil || cur == nil {
				return nil, fmt.Errorf("%w: line %d: bad hunk header %q", ErrBadPatch, n, line)
			}
			oldLeft, newLeft = 1, 1
			if m[1] != "" {
				oldLeft, _ = strconv.Atoi(m[1])
			}
			newLine, _ = strconv.Atoi(m[2])
			if m[3] != "" {
				newLeft, _ = strconv.Atoi(m[3])
			}
			if newLeft == 0 {
				newLine++ // "+N,0" names the line before the deletion
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if oldLeft > 0 || newLeft > 0 {
		return nil, fmt.Errorf("%w: the last hunk is cut short", ErrBadPatch)
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%w: no file in it", ErrBadPatch)
	}
	return files, nil
}

// funcDef is where a function is defined in a C file.
type funcDef struct {
	Name       string
	Start, End int // first line (the one naming it) and the closing brace, from 1
}

var defName = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*\(`)

// cFunctions finds the function definitions of a C file written in the
// kernel's style: the line naming the function starts in column 0, the
// body's braces stand alone in column 0.
func cFunctions(src []byte) []funcDef {
	lines := strings.Split(string(src), "\n")
	var defs []funcDef
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		if l == "" || !(l[0] == '_' || l[0] >= 'a' && l[0] <= 'z' || l[0] >= 'A' && l[0] <= 'Z') ||
			strings.HasSuffix(l, ";") || strings.Contains(l, "=") {
			continue
		}
		m := defName.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		// The declarator may go on over a few lines; the body's "{"
		// comes before any ";" in column 0.
		open := -1
		for j := i; j < len(lines) && j < i+12; j++ {
			if lines[j] == "{" {
				open = j
				break
			}
			if strings.HasSuffix(strings.TrimSpace(lines[j]), ";") || (j > i && lines[j] != "" && lines[j][0] != ' ' && lines[j][0] != '\t') {
				break
			}
		}
		if open < 0 {
			continue
		}
		end := -1
		for j := open + 1; j < len(lines); j++ {
			if lines[j] == "}" {
				end = j
				break
			}
		}
		if end < 0 {
			break
		}
		defs = append(defs, funcDef{Name: m[1], Start: i + 1, End: end + 1})
		i = end
	}
	return defs
}

// touchedFunctions returns the functions of src (the patched file) that
// contain a changed line, sorted.
func touchedFunctions(src []byte, lines []int) []string {
	seen := map[string]bool{}
	for _, d := range cFunctions(src) {
		for _, l := range lines {
			if l >= d.Start && l <= d.End {
				seen[d.Name] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
