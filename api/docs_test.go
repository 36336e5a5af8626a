package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The docs list every code a client can be answered, with the statuses the
// server really uses. The codes are read from the source (constants named
// Code*, geo's UnknownCodeError kinds) and the statuses from control's
// calls, so a code added anywhere fails here until it is documented.
func TestDocsListEveryCodeAndStatus(t *testing.T) {
	apiCodes := stringConsts(t, ".", "Code")
	refusals := stringConsts(t, "../placement", "Code")
	var geoCodes []string
	for _, kind := range unknownKinds(t, "../geo", "../policy", "../locate") {
		geoCodes = append(geoCodes, "unknown_"+kind)
	}
	answered := controlAnswers(t, apiCodes, refusals, geoCodes)
	for _, want := range []string{"country", "region", "group"} {
		if !slices.Contains(geoCodes, "unknown_"+want) {
			t.Errorf("geo kind %q not found in the source: is the parser still reading it?", want)
		}
	}
	if len(refusals) < 2 || len(answered) < 8 {
		t.Fatalf("read %d refusal codes and statuses for %d codes: the source reader is broken", len(refusals), len(answered))
	}

	apiDoc := readDoc(t, "API.md")
	table := errorTable(t, apiDoc)
	var all []string
	for _, c := range apiCodes {
		all = append(all, c)
	}
	for _, c := range refusals {
		all = append(all, c)
	}
	all = append(all, geoCodes...)
	for _, code := range all {
		statuses, ok := table[code]
		if !ok {
			t.Errorf("docs/API.md: code %q is missing from the error table", code)
			continue
		}
		if want := answered[code]; want != nil && !slices.Equal(statuses, want) {
			t.Errorf("docs/API.md: %q is listed with status %v; the server answers it with %v", code, statuses, want)
		}
	}
	for code := range table {
		if !slices.Contains(all, code) {
			t.Errorf("docs/API.md: the error table lists %q, which the server never answers", code)
		}
	}

	// Wherever prose names a code near a status, the status is one the
	// server answers that code with.
	for _, doc := range []string{"API.md", "PROTOCOL.md", "../README.md"} {
		checkStatusMentions(t, doc, readDoc(t, doc), answered)
	}

	// The node's codes, and the signaling protocol's, are documented with
	// the protocols they belong to.
	protocol, relays := readDoc(t, "PROTOCOL.md"), readDoc(t, "RELAYS.md")
	for name, code := range stringConsts(t, "../node", "Code") {
		if strings.HasPrefix(name, "CodeRelay") {
			requireRow(t, "RELAYS.md", relays, code)
		} else {
			requireRow(t, "PROTOCOL.md", protocol, code)
		}
	}
	for _, dir := range []string{"../signal", "../sfu"} {
		for _, code := range stringConsts(t, dir, "Code") {
			requireRow(t, "PROTOCOL.md", protocol, code)
		}
	}
}

func readDoc(t *testing.T, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("../docs", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

var (
	tableRow   = regexp.MustCompile("^\\| `([a-z_]+)` \\| ([^|]+) \\|")
	statusWord = regexp.MustCompile(`\b[1-5][0-9][0-9]\b`)
	namedCode  = regexp.MustCompile("[`\"]([a-z]+(?:_[a-z]+)*)[`\"]")
	codeBlock  = regexp.MustCompile("(?s)```.*?```")
)

// errorTable reads API.md's table of error codes: code → statuses.
func errorTable(t *testing.T, doc string) map[string][]int {
	t.Helper()
	table := map[string][]int{}
	_, rest, ok := strings.Cut(doc, "| code | status | meaning |")
	if !ok {
		t.Fatal("docs/API.md: no error table (| code | status | meaning |)")
	}
	for _, line := range strings.Split(rest, "\n")[2:] {
		m := tableRow.FindStringSubmatch(line)
		if m == nil {
			break
		}
		table[m[1]] = statuses(m[2])
	}
	return table
}

func statuses(s string) []int {
	var out []int
	for _, w := range statusWord.FindAllString(s, -1) {
		n, _ := strconv.Atoi(w)
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	slices.Sort(out)
	return out
}

// checkStatusMentions checks every paragraph of doc that names a code the
// server answers: each status it mentions is one of those codes' statuses.
// A paragraph, not a line, because a sentence may wrap between the two;
// success statuses may be named beside anything.
func checkStatusMentions(t *testing.T, name, doc string, answered map[string][]int) {
	t.Helper()
	line := 1
	for _, para := range strings.Split(doc, "\n\n") {
		var allowed []int
		named := false
		for _, m := range namedCode.FindAllStringSubmatch(para, -1) {
			if s, ok := answered[m[1]]; ok {
				named = true
				allowed = append(allowed, s...)
			}
		}
		prose := codeBlock.ReplaceAllString(para, "") // examples hold addresses, not statuses
		for _, s := range statuses(prose) {
			if named && !success(s) && !slices.Contains(allowed, s) {
				t.Errorf("%s:%d: status %d in a paragraph whose codes the server answers with %v:\n%s", name, line, s, allowed, para)
			}
		}
		line += strings.Count(para, "\n") + 2
	}
}

// success reports whether status is one of the success answers the API
// gives (a created meeting, a join waiting in the lobby, an empty answer).
func success(status int) bool {
	switch status {
	case http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusNoContent:
		return true
	}
	return false
}

// requireRow checks that code heads or ends a row of one of doc's tables.
func requireRow(t *testing.T, name, doc, code string) {
	t.Helper()
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "|") && strings.Contains(line, "| `"+code+"`") {
			return
		}
	}
	t.Errorf("docs/%s: code %q is in no table", name, code)
}

// parseDir parses the package in dir, tests left out.
func parseDir(t *testing.T, dir string) (*token.FileSet, []*ast.File) {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no Go files in %s (%v)", dir, err)
	}
	fset := token.NewFileSet()
	var files []*ast.File
	for _, n := range names {
		if strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, n, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return fset, files
}

// stringConsts returns the exported string constants of dir's package
// whose names start with prefix: name → value.
func stringConsts(t *testing.T, dir, prefix string) map[string]string {
	t.Helper()
	out := map[string]string{}
	_, files := parseDir(t, dir)
	for _, f := range files {
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, n := range vs.Names {
					if !strings.HasPrefix(n.Name, prefix) || !n.IsExported() || i >= len(vs.Values) {
						continue
					}
					if v, ok := stringLit(vs.Values[i]); ok {
						out[n.Name] = v
					}
				}
			}
		}
	}
	return out
}

func stringLit(e ast.Expr) (string, bool) {
	bl, ok := e.(*ast.BasicLit)
	if !ok || bl.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(bl.Value)
	return s, err == nil
}

// unknownKinds returns every Kind an UnknownCodeError is built with in
// dirs.
func unknownKinds(t *testing.T, dirs ...string) []string {
	t.Helper()
	var kinds []string
	for _, dir := range dirs {
		_, files := parseDir(t, dir)
		for _, f := range files {
			ast.Inspect(f, func(n ast.Node) bool {
				cl, ok := n.(*ast.CompositeLit)
				if !ok || (render(cl.Type) != "UnknownCodeError" && !strings.HasSuffix(render(cl.Type), ".UnknownCodeError")) {
					return true
				}
				if v, ok := stringLit(field(cl, "Kind")); ok && !slices.Contains(kinds, v) {
					kinds = append(kinds, v)
				}
				return true
			})
		}
	}
	return kinds
}

func field(cl *ast.CompositeLit, name string) ast.Expr {
	for _, el := range cl.Elts {
		if kv, ok := el.(*ast.KeyValueExpr); ok {
			if id, ok := kv.Key.(*ast.Ident); ok && id.Name == name {
				return kv.Value
			}
		}
	}
	return nil
}

// controlAnswers reads control's source for every error it builds
// (apiErr, api.Errorf, api.Error literals) and returns code → statuses.
func controlAnswers(t *testing.T, apiCodes, refusals map[string]string, geoCodes []string) map[string][]int {
	t.Helper()
	byName := statusNames()
	fset, files := parseDir(t, "../control")
	out := map[string][]int{}
	add := func(pos token.Pos, status, code ast.Expr) {
		if _, forwarded := status.(*ast.Ident); forwarded {
			return // a wrapper passing its caller's status on; the caller is read
		}
		sel, ok := status.(*ast.SelectorExpr)
		st, known := 0, false
		if ok {
			st, known = byName[sel.Sel.Name]
		}
		if !known {
			t.Errorf("%s: cannot read the status %s", fset.Position(pos), render(status))
			return
		}
		codes := codesOf(code, apiCodes, refusals, geoCodes)
		if codes == nil {
			t.Errorf("%s: cannot tell which codes %s stands for: teach docs_test.go", fset.Position(pos), render(code))
		}
		for _, c := range codes {
			if !slices.Contains(out[c], st) {
				out[c] = append(out[c], st)
				slices.Sort(out[c])
			}
		}
	}
	for _, f := range files {
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CallExpr:
				if name := render(n.Fun); (name == "apiErr" || name == "api.Errorf") && len(n.Args) >= 2 {
					add(n.Pos(), n.Args[0], n.Args[1])
				}
			case *ast.CompositeLit:
				if render(n.Type) == "api.Error" {
					if status, code := field(n, "Status"), field(n, "Code"); status != nil && code != nil {
						add(n.Pos(), status, code)
					}
				}
			}
			return true
		})
	}
	return out
}

// codesOf resolves a code expression in control to the codes it can be.
func codesOf(e ast.Expr, apiCodes, refusals map[string]string, geoCodes []string) []string {
	if s, ok := stringLit(e); ok {
		return []string{s}
	}
	switch e := e.(type) {
	case *ast.SelectorExpr:
		if render(e.X) == "api" {
			if v, ok := apiCodes[e.Sel.Name]; ok {
				return []string{v}
			}
			return nil
		}
		if render(e) == "ref.Code" { // a *placement.Refusal's code
			var out []string
			for _, c := range refusals {
				out = append(out, c)
			}
			return out
		}
	case *ast.BinaryExpr:
		if prefix, ok := stringLit(e.X); ok && prefix == "unknown_" && e.Op == token.ADD {
			return geoCodes // "unknown_" + a geo.UnknownCodeError's kind
		}
	}
	return nil
}

func render(e ast.Expr) string {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name
	case *ast.SelectorExpr:
		return render(e.X) + "." + e.Sel.Name
	case *ast.UnaryExpr:
		return e.Op.String() + render(e.X)
	}
	return "expression"
}

// statusNames maps net/http's status constant names to their values,
// built from the status texts they are named after ("Service
// Unavailable" → StatusServiceUnavailable).
func statusNames() map[string]int {
	out := map[string]int{}
	for code := 100; code < 600; code++ {
		text := http.StatusText(code)
		if text == "" {
			continue
		}
		name := "Status"
		for _, w := range strings.FieldsFunc(text, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			name += strings.ToUpper(w[:1]) + w[1:]
		}
		out[name] = code
	}
	return out
}
