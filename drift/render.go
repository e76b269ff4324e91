package drift

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ingot-build/ingot/internal/progress"
)

// WriteJSON writes r as indented JSON: the schema docs/drift.md describes, versioned by
// schema_version.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // paths are data, not HTML
	return enc.Encode(r)
}

// WriteText writes r for a person at a terminal: every difference, one a line, then the
// metrics that thresholds read.
func (r *Report) WriteText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "A\t%s\t%s\n", r.A.Label, describe(r.A))
	fmt.Fprintf(tw, "B\t%s\t%s\n", r.B.Label, describe(r.B))
	if err := tw.Flush(); err != nil {
		return err
	}

	p := r.Packages
	fmt.Fprintf(w, "\npackages: %d added, %d removed, %d upgraded, %d downgraded, %d changed\n",
		len(p.Added), len(p.Removed), len(p.Upgraded), len(p.Downgraded), len(p.Changed))
	for _, row := range packageRows(p) {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", row[0], row[1], strings.Join(nonEmpty(row[2], row[3]), " -> "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	if f := r.Files; f == nil {
		fmt.Fprintf(w, "\nfiles: unavailable: %s\n", r.Unavailable["files.added"])
	} else {
		fmt.Fprintf(w, "\nfiles: %d added, %d removed, %d changed; %d paths left out as noise\n",
			len(f.Added), len(f.Removed), len(f.Changed), f.Ignored)
		for _, row := range fileRows(f) {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", row[0], row[1], row[2])
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nsetuid/setgid files added: %d\n", len(f.SetuidAdded))
		for _, s := range f.SetuidAdded {
			fmt.Fprintf(tw, "  %s\t%s\n", s.Path, setuidText(s))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(w, "\nsize by top-level directory (regular files, noise left out):\n")
		for _, d := range f.Dirs {
			if d.Change != 0 {
				fmt.Fprintf(tw, "  %s\t%s\t(%s -> %s)\n", d.Dir, signedBytes(d.Change), progress.Bytes(d.BytesA), progress.Bytes(d.BytesB))
			}
		}
		fmt.Fprintf(tw, "  total\t%s%s\t(%s -> %s)\n", signedBytes(f.BytesB-f.BytesA), r.percentOf("size.growth"), progress.Bytes(f.BytesA), progress.Bytes(f.BytesB))
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	fmt.Fprintf(w, "\noutputs:\n")
	if len(r.Outputs) == 0 {
		fmt.Fprintf(w, "  none\n")
	}
	for _, o := range r.Outputs {
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", o.Format, outputName(o), outputText(o))
	}
	if err := tw.Flush(); err != nil {
		return err
	}

	fmt.Fprintf(w, "\nmetrics:\n")
	for _, m := range Metrics() {
		fmt.Fprintf(tw, "  %s\t%s\n", m.Name, r.metricText(m))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\nsame: %s\n", r.sameText())
	return err
}

// markdownRows is how many rows a Markdown table shows before it says how many more there are:
// a pull-request comment has a size limit (65,536 characters on GitHub), and the JSON has all.
const markdownRows = 200

// markdownOpen is how many rows a Markdown table may have and still be shown open; a longer
// one is folded in a <details> element.
const markdownOpen = 10

// WriteMarkdown writes r as GitHub-flavoured Markdown for a pull-request comment: the metrics,
// then a table for each kind of difference, long ones folded in <details>.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "### ingot diff\n\n")
	fmt.Fprintf(&b, "- **A** %s: %s\n- **B** %s: %s\n\n", code(r.A.Label), describe(r.A), code(r.B.Label), describe(r.B))
	fmt.Fprintf(&b, "**Same:** %s\n\n", r.sameText())

	fmt.Fprintf(&b, "| metric | value |\n|---|---:|\n")
	for _, m := range Metrics() {
		fmt.Fprintf(&b, "| %s | %s |\n", code(m.Name), cell(r.metricText(m)))
	}

	p := r.Packages
	fmt.Fprintf(&b, "\n#### Packages: %d added, %d removed, %d upgraded, %d downgraded, %d changed\n\n",
		len(p.Added), len(p.Removed), len(p.Upgraded), len(p.Downgraded), len(p.Changed))
	markdownTable(&b, []string{"change", "package", "A", "B"}, packageRows(p))

	if f := r.Files; f == nil {
		fmt.Fprintf(&b, "\n#### Files: unavailable\n\n%s\n", cell(r.Unavailable["files.added"]))
	} else {
		fmt.Fprintf(&b, "\n#### Files: %d added, %d removed, %d changed\n\n%d paths left out as noise.\n\n",
			len(f.Added), len(f.Removed), len(f.Changed), f.Ignored)
		markdownTable(&b, []string{"change", "path", "what"}, fileRows(f))
		fmt.Fprintf(&b, "\n#### Setuid and setgid files added: %d\n\n", len(f.SetuidAdded))
		var rows [][]string
		for _, s := range f.SetuidAdded {
			rows = append(rows, []string{s.Path, setuidText(s)})
		}
		markdownTable(&b, []string{"path", "what"}, rows)
		fmt.Fprintf(&b, "\n#### Size by top-level directory\n\nRegular files, noise left out: %s%s (%s → %s).\n\n",
			signedBytes(f.BytesB-f.BytesA), r.percentOf("size.growth"), progress.Bytes(f.BytesA), progress.Bytes(f.BytesB))
		rows = nil
		for _, d := range f.Dirs {
			if d.Change != 0 {
				rows = append(rows, []string{d.Dir, progress.Bytes(d.BytesA), progress.Bytes(d.BytesB), signedBytes(d.Change)})
			}
		}
		markdownTable(&b, []string{"directory", "A", "B", "change"}, rows)
	}

	fmt.Fprintf(&b, "\n#### Outputs\n\n")
	var rows [][]string
	for _, o := range r.Outputs {
		a, bs := "", ""
		if o.A != nil {
			a = progress.Bytes(o.A.Size)
		}
		if o.B != nil {
			bs = progress.Bytes(o.B.Size)
		}
		change := signedBytes(o.Change)
		if o.Growth != nil {
			change += fmt.Sprintf(" (%s)", signedPercent(*o.Growth))
		}
		rows = append(rows, []string{o.Format, outputName(o), a, bs, change})
	}
	markdownTable(&b, []string{"format", "file", "A", "B", "change"}, rows)
	_, err := io.WriteString(w, b.String())
	return err
}

// markdownTable writes a table, folded in <details> when long, cut at markdownRows. The first
// column of each row is written as code when the header names a path or a package.
func markdownTable(b *strings.Builder, header []string, rows [][]string) {
	if len(rows) == 0 {
		b.WriteString("None.\n")
		return
	}
	folded := len(rows) > markdownOpen
	if folded {
		// GitHub renders Markdown inside <details> only after a blank line.
		fmt.Fprintf(b, "<details><summary>%d rows</summary>\n\n", len(rows))
	}
	b.WriteString("|")
	for _, h := range header {
		fmt.Fprintf(b, " %s |", h)
	}
	b.WriteString("\n|")
	for range header {
		b.WriteString("---|")
	}
	b.WriteString("\n")
	for i, row := range rows {
		if i == markdownRows {
			fmt.Fprintf(b, "\n… and %d more: `ingot diff --json` lists them all.\n", len(rows)-markdownRows)
			break
		}
		b.WriteString("|")
		for j, c := range row {
			if h := header[j]; (h == "path" || h == "package" || h == "file" || h == "directory") && c != "" {
				c = code(c)
			} else {
				c = cell(c)
			}
			fmt.Fprintf(b, " %s |", c)
		}
		b.WriteString("\n")
	}
	if folded {
		b.WriteString("\n</details>\n")
	}
}

// cell makes s safe in a Markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "<", "&lt;").Replace(s)
}

// code writes s as inline code in a table cell, with a fence longer than any run of backticks
// in it (CommonMark), and its pipes escaped (GitHub splits cells on them even inside code).
func code(s string) string {
	fence := "`"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	pad := ""
	if strings.HasPrefix(s, "`") || strings.HasSuffix(s, "`") {
		pad = " "
	}
	return fence + pad + strings.NewReplacer("|", `\|`, "\n", " ").Replace(s) + pad + fence
}

// packageRows are the package differences as rows: kind, name, A's version, B's version.
func packageRows(p Packages) [][]string {
	var rows [][]string
	for _, x := range p.Added {
		rows = append(rows, []string{"added", x.Name, "", x.Version})
	}
	for _, x := range p.Removed {
		rows = append(rows, []string{"removed", x.Name, x.Version, ""})
	}
	for _, kind := range []struct {
		name string
		list []PackageChange
	}{{"upgraded", p.Upgraded}, {"downgraded", p.Downgraded}, {"changed", p.Changed}} {
		for _, x := range kind.list {
			rows = append(rows, []string{kind.name, x.Name, x.From, x.To})
		}
	}
	return rows
}

// fileRows are the file differences as rows: kind, path, what.
func fileRows(f *Files) [][]string {
	var rows [][]string
	for _, e := range f.Added {
		rows = append(rows, []string{"added", e.Path, entryText(attrsOf(e))})
	}
	for _, e := range f.Removed {
		rows = append(rows, []string{"removed", e.Path, entryText(attrsOf(e))})
	}
	for _, c := range f.Changed {
		rows = append(rows, []string{"changed", c.Path, changeText(c)})
	}
	return rows
}

// entryText describes an entry: "file 0644 0:0 12.0 KiB", "symlink -> /usr/bin/x".
func entryText(a Attrs) string {
	s := fmt.Sprintf("%s %s %d:%d", a.Type, a.Mode, a.UID, a.GID)
	switch a.Type {
	case typeFile:
		s += " " + progress.Bytes(a.Size)
	case typeSymlink:
		s += " -> " + a.Target
	}
	return s
}

// changeText says what changed in a file: "content 1.0 KiB -> 2.0 KiB, mode 0755 -> 4755".
func changeText(c FileChange) string {
	var parts []string
	for _, what := range c.What {
		switch what {
		case ChangeContent:
			switch {
			case c.From.Type == typeSymlink:
				parts = append(parts, fmt.Sprintf("content: target %s -> %s", c.From.Target, c.To.Target))
			case c.From.Size != c.To.Size && progress.Bytes(c.From.Size) == progress.Bytes(c.To.Size):
				parts = append(parts, fmt.Sprintf("content: %d -> %d bytes", c.From.Size, c.To.Size))
			case c.From.Size != c.To.Size:
				parts = append(parts, fmt.Sprintf("content: %s -> %s", progress.Bytes(c.From.Size), progress.Bytes(c.To.Size)))
			default:
				parts = append(parts, "content: same size, other bytes")
			}
		case ChangeMode:
			parts = append(parts, fmt.Sprintf("mode %s -> %s", c.From.Mode, c.To.Mode))
		case ChangeOwner:
			parts = append(parts, fmt.Sprintf("owner %d:%d -> %d:%d", c.From.UID, c.From.GID, c.To.UID, c.To.GID))
		case ChangeType:
			parts = append(parts, fmt.Sprintf("type %s -> %s", c.From.Type, c.To.Type))
		}
	}
	return strings.Join(parts, ", ")
}

func setuidText(s SetuidFile) string {
	how := "gained " + strings.Join(s.Bits, " and ")
	if s.New {
		how = "new " + strings.Join(s.Bits, " and ") + " file"
	}
	return fmt.Sprintf("%s %d:%d: %s", s.Mode, s.UID, s.GID, how)
}

func outputName(o OutputChange) string {
	switch {
	case o.A == nil:
		return o.B.File
	case o.B == nil || o.A.File == o.B.File:
		return o.A.File
	}
	return o.A.File + " -> " + o.B.File
}

func outputText(o OutputChange) string {
	switch {
	case o.A == nil:
		return fmt.Sprintf("new in B: %s", progress.Bytes(o.B.Size))
	case o.B == nil:
		return fmt.Sprintf("not in B (was %s)", progress.Bytes(o.A.Size))
	}
	s := fmt.Sprintf("%s -> %s  %s", progress.Bytes(o.A.Size), progress.Bytes(o.B.Size), signedBytes(o.Change))
	if o.Growth != nil {
		s += fmt.Sprintf(" (%s)", signedPercent(*o.Growth))
	}
	return s
}

// describe is one line about a build: name, build, when, how many packages and files.
func describe(b Build) string {
	s := fmt.Sprintf("%s, build %s", b.Name, b.BuildID)
	if !b.Finished.IsZero() {
		s += ", finished " + b.Finished.UTC().Format(time.RFC3339)
	}
	s += fmt.Sprintf(", %d packages", b.Packages)
	if b.Inventory {
		s += fmt.Sprintf(", %d files", b.Files)
	} else {
		s += ", no file inventory"
	}
	return s
}

func (r *Report) metricText(m Metric) string {
	if v, ok := r.Metrics[m.Name]; ok {
		return formatValue(m, v)
	}
	return "unavailable: " + r.Unavailable[m.Name]
}

// percentOf is " (+4.2%)" for a percentage metric r has, or "".
func (r *Report) percentOf(name string) string {
	if v, ok := r.Metrics[name]; ok {
		return " (" + signedPercent(v) + ")"
	}
	return ""
}

func (r *Report) sameText() string {
	switch {
	case r.Same:
		return "yes: nothing differs beyond the noise list"
	case r.Files == nil:
		return "unknown: without both file inventories, only packages and outputs were compared"
	}
	return "no"
}

// signedBytes is a size change: "+50.0 MiB", "-12 B", "0 B".
func signedBytes(n int64) string {
	switch {
	case n > 0:
		return "+" + progress.Bytes(n)
	case n < 0:
		return "-" + progress.Bytes(-n)
	}
	return "0 B"
}

func signedPercent(v float64) string {
	s := strconv.FormatFloat(math.Round(v*100)/100, 'f', -1, 64) + "%"
	if v > 0 {
		s = "+" + s
	}
	return s
}

func nonEmpty(ss ...string) []string {
	var out []string
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
