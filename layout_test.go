// Tests of the module's layout: every package says what it provides, and the imports keep
// the boundaries the architecture draws (STYLE.md).
package confguest_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "confguest"

// pkg is one package of the module as its non-test files declare it.
type pkg struct {
	name    string
	docs    map[string]string // file name → its package comment
	imports []string          // import paths of the module's own packages
}

// modulePackages parses the package clause, comments and imports of every non-test Go file
// of the module (whatever its build constraints), by import path.
func modulePackages(t *testing.T) map[string]*pkg {
	t.Helper()
	pkgs := map[string]*pkg{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != "." && (strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly|parser.ParseComments)
		if err != nil {
			return err
		}
		ip := module
		if dir := filepath.Dir(path); dir != "." {
			ip += "/" + filepath.ToSlash(dir)
		}
		p := pkgs[ip]
		if p == nil {
			p = &pkg{name: f.Name.Name, docs: map[string]string{}}
			pkgs[ip] = p
		}
		if f.Doc != nil {
			p.docs[filepath.Base(path)] = f.Doc.Text()
		}
		for _, is := range f.Imports {
			v, _ := strconv.Unquote(is.Path.Value)
			if v == module || strings.HasPrefix(v, module+"/") {
				p.imports = append(p.imports, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(pkgs) < 10 {
		t.Fatalf("found %d packages; run the test from the module root", len(pkgs))
	}
	return pkgs
}

// TestPackageDocs: every package has a package comment that says what it provides, the one
// go doc prints: "Package NAME ..." for a library, any sentence for a command. A generated
// file's "Code generated ... DO NOT EDIT." header must not be one, or go doc prints it.
func TestPackageDocs(t *testing.T) {
	for ip, p := range modulePackages(t) {
		if len(p.docs) == 0 {
			t.Errorf("%s: no package comment: add one (a doc.go) that says what the package provides", ip)
			continue
		}
		for file, doc := range p.docs {
			switch {
			case strings.HasPrefix(doc, "Code generated") || strings.Contains(doc, "DO NOT EDIT"):
				t.Errorf("%s: %s: the generator's header is a package comment (go doc prints it): separate it from the package clause by a blank line", ip, file)
			case p.name != "main" && !strings.HasPrefix(doc, "Package "+p.name+" "):
				t.Errorf("%s: %s: package comment %.40q does not start with \"Package %s \"", ip, file, doc, p.name)
			case len(strings.Fields(doc)) < 6:
				t.Errorf("%s: %s: package comment %q says too little about what the package provides", ip, file, doc)
			}
		}
	}
}

// TestImportBoundaries: the host side reaches nothing of the image pipeline (build/) and
// imports of the guest only its API (agent/api/...); guest code (init, agent) imports
// nothing of the host side.
func TestImportBoundaries(t *testing.T) {
	pkgs := modulePackages(t)
	deps := func(ip string) []string { // ip and what it imports, directly or not
		seen := map[string]bool{}
		var walk func(string)
		walk = func(p string) {
			if seen[p] {
				return
			}
			seen[p] = true
			if q := pkgs[p]; q != nil {
				for _, d := range q.imports {
					walk(d)
				}
			}
		}
		walk(ip)
		var out []string
		for p := range seen {
			out = append(out, p)
		}
		slices.Sort(out)
		return out
	}
	under := func(p, dir string) bool { return p == module+"/"+dir || strings.HasPrefix(p, module+"/"+dir+"/") }
	for ip, p := range pkgs {
		switch {
		case under(ip, "hostside"):
			for _, d := range deps(ip) {
				if under(d, "build") {
					t.Errorf("%s depends on %s: the host side must not link the image pipeline", ip, d)
				}
			}
			for _, d := range p.imports {
				if (under(d, "agent") && !under(d, "agent/api")) || under(d, "init") {
					t.Errorf("%s imports %s: the host imports only the agent's API (agent/api/...)", ip, d)
				}
			}
		case under(ip, "init") || under(ip, "agent"):
			for _, d := range deps(ip) {
				if under(d, "hostside") {
					t.Errorf("%s depends on %s: guest code never imports the host side", ip, d)
				}
			}
		}
	}
}
