package sbom

import (
	"errors"
	"regexp"
	"strings"

	"github.com/github/go-spdx/v2/spdxexp"
	"github.com/github/go-spdx/v2/spdxexp/spdxlicenses"
)

// License strings come from the guest: the first License: line of a Debian package's
// machine-readable copyright file (DEP-5 short names such as "GPL-2+", "BSD-3-clause", "Expat",
// "GPL-2+ or Artistic", "GPL-2+ with OpenSSL exception") or an RPM's License tag (old Fedora
// names such as "GPLv2+", newer ones SPDX expressions). SBOM consumers want SPDX license
// expressions, so each is translated term by term where the translation is unambiguous:
// GPL-2+ → GPL-2.0-or-later, GPL-2 → GPL-2.0-only, Expat → MIT, BSD-3-clause → BSD-3-Clause.
// A term with no unambiguous SPDX id ("public-domain", an unversioned "GPL" or "BSD", an
// exception SPDX does not list) becomes a LicenseRef- of its own, which the SPDX document
// declares with the name it was given, so the document stays valid and loses nothing. The
// license list is go-spdx's copy of the SPDX License List (spdxlicenses.LicenseListVersion).

// license is what a package's stated license becomes.
type license struct {
	// raw is the license as the guest stated it; "" when it stated none.
	raw string
	// expr is the SPDX license expression for raw; "" when raw is "".
	expr string
	// refs are the LicenseRef- ids expr uses.
	refs []string
}

// licenseMapper maps license strings, remembering each LicenseRef- it hands out and the name it
// stands for (the first term that made it), for the SPDX document's extracted licensing infos.
type licenseMapper struct {
	seen map[string]license
	refs map[string]string // LicenseRef-… → the term it stands for
}

func newLicenseMapper() *licenseMapper {
	return &licenseMapper{seen: map[string]license{}, refs: map[string]string{}}
}

// mapLicense translates raw (see the comment at the top of this file).
func (lm *licenseMapper) mapLicense(raw string) license {
	raw = strings.Join(strings.Fields(raw), " ")
	if raw == "" {
		return license{}
	}
	if l, ok := lm.seen[raw]; ok {
		return l
	}
	l := license{raw: raw}
	var refs []string
	named := map[string]string{} // the LicenseRef- ids this string needs, and their terms
	ref := func(term string) *lexpr {
		id := "LicenseRef-" + idPart(term)
		if rest, ok := strings.CutPrefix(term, "LicenseRef-"); ok && rest != "" && idPart(rest) == rest {
			id = term // already one (an RPM's SPDX-style License tag)
		} else if id == "LicenseRef-" {
			id = "LicenseRef-unnamed"
		}
		if _, ok := named[id]; !ok {
			named[id] = term
		}
		refs = append(refs, id)
		return &lexpr{id: id}
	}
	if tree, err := parseLicense(raw); err == nil {
		l.expr = tree.toSPDX(ref).render("")
	}
	// A last check by go-spdx's parser: what it does not take (a case this translation
	// missed) is named as a whole rather than written invalid.
	if ok, _ := spdxexp.ValidateLicenses([]string{l.expr}); l.expr == "" || !ok {
		refs, named = nil, map[string]string{}
		l.expr = ref(raw).id
	}
	for id, term := range named {
		if _, ok := lm.refs[id]; !ok {
			lm.refs[id] = term
		}
	}
	l.refs = uniq(refs)
	lm.seen[raw] = l
	return l
}

func uniq(s []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, x := range s {
		if !seen[x] {
			seen[x] = true
			out = append(out, x)
		}
	}
	return out
}

// singleID is the license's SPDX id when its expression is one listed license and nothing else.
func (l license) singleID() (string, bool) {
	if l.expr == "" || len(l.refs) > 0 {
		return "", false
	}
	if ok, id := spdxlicenses.IsActiveLicense(l.expr); ok {
		return id, true
	}
	return "", false
}

// lnode is a parsed license string: a term (one or more words, maybe WITH an exception) or an
// AND / OR of nodes.
type lnode struct {
	op   string // "AND", "OR", or "" for a term
	term string
	exc  string
	kids []*lnode
}

// lexpr is an SPDX license expression: an id (a license, "id+", "id WITH exception", or a
// LicenseRef-), or an AND / OR of expressions.
type lexpr struct {
	op   string
	id   string
	kids []*lexpr
}

// render writes e, in parentheses where an OR sits inside an AND (AND binds tighter in SPDX, as
// in DEP-5).
func (e *lexpr) render(parent string) string {
	if e.op == "" {
		return e.id
	}
	parts := make([]string, len(e.kids))
	for i, k := range e.kids {
		parts[i] = k.render(e.op)
	}
	s := strings.Join(parts, " "+e.op+" ")
	if parent == "AND" && e.op == "OR" {
		s = "(" + s + ")"
	}
	return s
}

// toSPDX translates the tree; ref names a term that has no SPDX id.
func (n *lnode) toSPDX(ref func(string) *lexpr) *lexpr {
	if n.op != "" {
		e := &lexpr{op: n.op}
		for _, k := range n.kids {
			ke := k.toSPDX(ref)
			if ke.op == n.op {
				e.kids = append(e.kids, ke.kids...) // A OR (B OR C) is A OR B OR C
			} else {
				e.kids = append(e.kids, ke)
			}
		}
		return e
	}
	if n.exc != "" {
		id, ok := licenseID(n.term)
		exc, eok := exceptionID(n.exc)
		if !ok || !eok {
			return ref(n.term + " with " + n.exc)
		}
		return &lexpr{id: id + " WITH " + exc}
	}
	if e, ok := debianNames[strings.ToLower(n.term)]; ok {
		return e
	}
	if id, ok := licenseID(n.term); ok {
		return &lexpr{id: id}
	}
	return ref(n.term)
}

// debianNames are DEP-5 short names whose SPDX form is not found by their spelling alone.
var debianNames = map[string]*lexpr{
	"expat": {id: "MIT"},
	// Debian's common-licenses/Artistic is Perl's Artistic License.
	"artistic": {id: "Artistic-1.0-Perl"},
	// DEP-5: "Perl: Same terms as Perl itself (i.e. GPL-1+ or Artistic)".
	"perl":        {op: "OR", kids: []*lexpr{{id: "Artistic-1.0-Perl"}, {id: "GPL-1.0-or-later"}}},
	"cc0":         {id: "CC0-1.0"},
	"sil-ofl-1.1": {id: "OFL-1.1"},
}

// gnuRE matches the GNU licenses as Debian (GPL-2+, LGPL-2.1, GFDL-NIV-1.2+), old RPM (GPLv2+)
// and SPDX (GPL-2.0-or-later, and the deprecated GPL-2.0+) write them.
var gnuRE = regexp.MustCompile(`(?i)^(agpl|gpl|lgpl|gfdl-niv|gfdl)-?v?(\d+(?:\.\d+)?)(\+|-or-later|-only)?$`)

// licenseID is the SPDX id of one license term, or false when it has none unambiguously.
func licenseID(term string) (string, bool) {
	if m := gnuRE.FindStringSubmatch(term); m != nil {
		fam, ver := strings.ToUpper(m[1]), m[2]
		if !strings.Contains(ver, ".") {
			ver += ".0"
		}
		id := fam + "-" + ver
		if fam == "GFDL-NIV" {
			id = "GFDL-" + ver + "-no-invariants"
		}
		if m[3] == "" || m[3] == "-only" {
			id += "-only"
		} else {
			id += "-or-later"
		}
		ok, id := spdxlicenses.IsActiveLicense(id)
		return id, ok
	}
	base, plus := strings.CutSuffix(term, "+")
	suffix := ""
	if plus {
		suffix = "+" // SPDX's "or any later version" for the licenses that have no -or-later id
	}
	if ok, id := spdxlicenses.IsActiveLicense(base); ok {
		return id + suffix, true
	}
	// Debian drops a ".0": Apache-2, MPL-2, Artistic-2, CC-BY-SA-3.
	if last := strings.LastIndexByte(base, '-'); last > 0 && isDigits(base[last+1:]) {
		if ok, id := spdxlicenses.IsActiveLicense(base + ".0"); ok {
			return id + suffix, true
		}
	}
	return "", false
}

// exceptionID is the SPDX id of a license exception as written after "with", such as
// "Classpath-exception-2.0" or "GCC exception 3.1"; Debian's free-text ones ("OpenSSL
// exception") mostly have none.
func exceptionID(words string) (string, bool) {
	ok, id := spdxlicenses.IsException(strings.Join(strings.Fields(words), "-"))
	return id, ok
}

func isDigits(s string) bool {
	return s != "" && strings.Trim(s, "0123456789") == ""
}

// parseLicense reads a license string: DEP-5's "A or B and C, and D", "A with X exception",
// "|" for or, SPDX's upper-case operators and parentheses. AND binds tighter than OR; a comma
// followed by "and" or "or" binds loosest (DEP-5's "A or B, and C").
func parseLicense(s string) (*lnode, error) {
	p := &lparser{toks: tokenize(s)}
	n, err := p.list()
	if err != nil {
		return nil, err
	}
	if p.i != len(p.toks) {
		return nil, errLicenseSyntax
	}
	return n, nil
}

var errLicenseSyntax = errors.New("license string is not an expression")

func tokenize(s string) []string {
	var toks []string
	word := strings.Builder{}
	flush := func() {
		if word.Len() > 0 {
			toks = append(toks, word.String())
			word.Reset()
		}
	}
	for _, r := range s {
		switch r {
		case '(', ')', ',', '|':
			flush()
			toks = append(toks, string(r))
		case ' ', '\t':
			flush()
		default:
			word.WriteRune(r)
		}
	}
	flush()
	return toks
}

type lparser struct {
	toks []string
	i    int
}

func (p *lparser) peek() string {
	if p.i < len(p.toks) {
		return p.toks[p.i]
	}
	return ""
}

// isOp says whether t ends a run of words: an operator, a parenthesis, a comma, or the end.
func isOp(t string) bool {
	switch strings.ToLower(t) {
	case "", "and", "or", "with", "(", ")", ",", "|":
		return true
	}
	return false
}

func join(op string, a, b *lnode) *lnode {
	return &lnode{op: op, kids: []*lnode{a, b}}
}

func (p *lparser) list() (*lnode, error) {
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	for p.peek() == "," {
		p.i++
		var op string
		switch strings.ToLower(p.peek()) {
		case "and":
			op = "AND"
		case "or":
			op = "OR"
		default:
			// A bare comma may be part of a name ("Redistributable, no modification
			// permitted"): not unambiguous.
			return nil, errLicenseSyntax
		}
		p.i++
		m, err := p.or()
		if err != nil {
			return nil, err
		}
		n = join(op, n, m)
	}
	return n, nil
}

func (p *lparser) or() (*lnode, error) {
	n, err := p.and()
	if err != nil {
		return nil, err
	}
	for t := strings.ToLower(p.peek()); t == "or" || t == "|"; t = strings.ToLower(p.peek()) {
		p.i++
		m, err := p.and()
		if err != nil {
			return nil, err
		}
		n = join("OR", n, m)
	}
	return n, nil
}

func (p *lparser) and() (*lnode, error) {
	n, err := p.with()
	if err != nil {
		return nil, err
	}
	for strings.ToLower(p.peek()) == "and" {
		p.i++
		m, err := p.with()
		if err != nil {
			return nil, err
		}
		n = join("AND", n, m)
	}
	return n, nil
}

func (p *lparser) with() (*lnode, error) {
	n, err := p.primary()
	if err != nil {
		return nil, err
	}
	if strings.ToLower(p.peek()) != "with" {
		return n, nil
	}
	p.i++
	exc := p.words()
	if exc == "" || n.op != "" {
		return nil, errLicenseSyntax
	}
	n.exc = exc
	return n, nil
}

func (p *lparser) primary() (*lnode, error) {
	if p.peek() == "(" {
		p.i++
		n, err := p.list()
		if err != nil {
			return nil, err
		}
		if p.peek() != ")" {
			return nil, errLicenseSyntax
		}
		p.i++
		return n, nil
	}
	term := p.words()
	if term == "" {
		return nil, errLicenseSyntax
	}
	return &lnode{term: term}, nil
}

// words reads the words up to the next operator: a term ("GPL-2+", or a name of several words)
// or an exception ("OpenSSL exception").
func (p *lparser) words() string {
	var w []string
	for !isOp(p.peek()) {
		w = append(w, p.peek())
		p.i++
	}
	return strings.Join(w, " ")
}
