package sign

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strings"

	"aead.dev/minisign"
	"golang.org/x/sync/errgroup"

	"github.com/ingot-build/ingot/manifest"
)

// The records of an output directory, by the names bake gives them.
const (
	SumsFile      = "SHA256SUMS"
	ManifestFile  = "manifest.json"
	SPDXFile      = "sbom.spdx.json"
	CycloneDXFile = "sbom.cdx.json"
)

// Problems VerifyDir finds besides signatures (ErrNoSignature, ErrBadSignature, ErrWrongKey),
// for errors.Is.
var (
	// ErrNotOutputDir is a directory that holds no manifest.json: not an ingot build's output.
	ErrNotOutputDir = errors.New("not an ingot output directory")
	// ErrTampered is a file whose sha256 is not the one SHA256SUMS lists for it.
	ErrTampered = errors.New("sha256 differs")
	// ErrInconsistent is a disagreement between manifest.json, SHA256SUMS and the SBOM.
	ErrInconsistent = errors.New("records disagree")
	// ErrMalformed is a SHA256SUMS or SBOM that cannot be read as one, or a path in it that
	// leaves the directory.
	ErrMalformed = errors.New("malformed")
)

// Report is what VerifyDir checked, and the problems it found: the directory is verified when
// there are none.
type Report struct {
	Dir string
	// KeyID is the public key's ID, as minisign prints it.
	KeyID string
	// Signed are the files whose signature verified, by name in the directory.
	Signed []string
	// Summed is how many files SHA256SUMS lists, and SummedBytes their size, read and hashed.
	Summed      int
	SummedBytes int64
	// Outputs and Downloads are how many of each the manifest lists; Inventory says it names a
	// file inventory. Each was found in SHA256SUMS, or is a problem.
	Outputs   int
	Downloads int
	Inventory bool
	// SBOM is the SBOM the outputs were looked up in (SPDXFile), "" when the build has none.
	SBOM string
	// Problems are every check that failed, each an error that names its file and wraps one of
	// the sentinel errors of this package.
	Problems []error
}

// OK says every check passed.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(err error) { r.Problems = append(r.Problems, err) }

// VerifyDir verifies an ingot output directory with pub, as `ingot verify` does:
//   - the signatures of SHA256SUMS and manifest.json, of sbom.spdx.json and sbom.cdx.json when
//     they are there, and of any other FILE that has a FILE.minisig beside it;
//   - SHA256SUMS: every file it lists is there, inside dir, and has the sha256 listed;
//   - consistency: each output and download of the manifest, and its file inventory, is in
//     SHA256SUMS with the sha256 the manifest gives; each output is described in the SPDX SBOM,
//     when there is one, with that sha256 too.
//
// It checks everything and reports every problem in the Report; its error is for a dir that is
// not an output directory at all (ErrNotOutputDir) and for ctx ending.
//
// Files are opened through an os.Root on dir, so that no path in SHA256SUMS, nor a symlink,
// reads outside it; large outputs are hashed streaming, a few at a time.
func VerifyDir(ctx context.Context, dir string, pub minisign.PublicKey) (*Report, error) {
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotOutputDir, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%w: %s is not a directory", ErrNotOutputDir, dir)
	}
	if _, err := os.Stat(filepath.Join(dir, ManifestFile)); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s has no %s", ErrNotOutputDir, dir, ManifestFile)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotOutputDir, err)
	}
	defer root.Close()
	r := &Report{Dir: dir, KeyID: KeyID(pub.ID())}

	if err := r.checkSignatures(dir, root, pub); err != nil {
		return nil, err
	}
	m, err := readManifest(root)
	if err != nil {
		r.problem(err)
	}
	sums, err := r.checkSums(ctx, root)
	if err != nil {
		return nil, err
	}
	if m != nil && sums != nil {
		r.checkManifest(m, sums)
	}
	if m != nil {
		r.checkSPDX(root, m)
	}
	return r, nil
}

// readManifest reads manifest.json from root.
func readManifest(root *os.Root) (*manifest.Manifest, error) {
	f, err := root.Open(ManifestFile)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ManifestFile, err)
	}
	defer f.Close()
	m, err := manifest.Decode(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", ManifestFile, ErrMalformed, err)
	}
	return m, nil
}

// checkSignatures verifies the records' signatures: SHA256SUMS and manifest.json always, the
// SBOMs when they are there, and every other signature in dir.
func (r *Report) checkSignatures(dir string, root *os.Root, pub minisign.PublicKey) error {
	names := []string{SumsFile, ManifestFile}
	for _, opt := range []string{SPDXFile, CycloneDXFile} {
		if _, err := os.Lstat(filepath.Join(dir, opt)); err == nil {
			names = append(names, opt)
		}
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return fmt.Errorf("%w: %w", ErrNotOutputDir, err)
	}
	for _, e := range entries {
		name, isSig := strings.CutSuffix(e.Name(), SigExt)
		if isSig && name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	for _, name := range names {
		if err := verify(pub, name, root.Open); err != nil {
			r.problem(err)
			continue
		}
		r.Signed = append(r.Signed, name)
	}
	return nil
}

// parseSums reads SHA256SUMS (manifest.ParseSums): each line that is not one is a problem; the
// lines that are come back.
func (r *Report) parseSums(data io.Reader) []manifest.Sum {
	list, bad, err := manifest.ParseSums(data)
	for _, p := range bad {
		r.problem(fmt.Errorf("%s:%d: %w: %s", SumsFile, p.Line, ErrMalformed, p.Msg))
	}
	if err != nil {
		r.problem(fmt.Errorf("%s: %w: %w", SumsFile, ErrMalformed, err))
	}
	return list
}

// checkSums hashes every file SHA256SUMS lists and compares. It returns the sums by file, nil if
// SHA256SUMS cannot be read; its error is ctx's.
func (r *Report) checkSums(ctx context.Context, root *os.Root) (map[string]string, error) {
	f, err := root.Open(SumsFile)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			r.problem(fmt.Errorf("%s: %w: the directory has no checksum list", SumsFile, ErrMissing))
		} else {
			r.problem(fmt.Errorf("%s: %w", SumsFile, err))
		}
		return nil, nil
	}
	list := r.parseSums(f)
	f.Close()

	problems := make([]error, len(list))
	sizes := make([]int64, len(list))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(max(2, runtime.NumCPU()))
	for i, s := range list {
		g.Go(func() error {
			got, n, err := hashFile(gctx, root, s.File)
			sizes[i] = n
			switch {
			case gctx.Err() != nil:
				return gctx.Err()
			case errors.Is(err, fs.ErrNotExist):
				problems[i] = fmt.Errorf("%s: %w: %s lists it (line %d)", s.File, ErrMissing, SumsFile, s.Line)
			case err != nil:
				problems[i] = fmt.Errorf("%s: %w", s.File, err)
			case got != s.SHA256:
				problems[i] = fmt.Errorf("%s: %w: %s lists sha256 %s, the file has %s: it changed after the build", s.File, ErrTampered, SumsFile, s.SHA256, got)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	out := make(map[string]string, len(list))
	for i, s := range list {
		out[s.File] = s.SHA256
		r.SummedBytes += sizes[i]
		if problems[i] != nil {
			r.problem(problems[i])
		}
	}
	r.Summed = len(list)
	return out, nil
}

// hashFile is the sha256 of a regular file in root, and its size.
func hashFile(ctx context.Context, root *os.Root, file string) (string, int64, error) {
	f, err := root.Open(filepath.FromSlash(file))
	if err != nil {
		if st, lerr := root.Lstat(filepath.FromSlash(file)); lerr == nil && st.Mode().Type() == fs.ModeSymlink && !errors.Is(err, fs.ErrNotExist) {
			return "", 0, fmt.Errorf("%w: a symlink that leads out of the directory: %w", ErrMalformed, err)
		}
		return "", 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", 0, err
	}
	if !st.Mode().IsRegular() {
		return "", 0, fmt.Errorf("%w: not a regular file (%s)", ErrMalformed, st.Mode().Type())
	}
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return "", n, fmt.Errorf("read it: %w", err)
	}
	return hex.EncodeToString(h.Sum(nil)), n, nil
}

// ctxReader stops a long read when ctx ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

// checkManifest compares the manifest's outputs, downloads and inventory with SHA256SUMS.
func (r *Report) checkManifest(m *manifest.Manifest, sums map[string]string) {
	check := func(kind, file, sha string) {
		listed, ok := sums[path.Clean(file)]
		switch {
		case !ok:
			r.problem(fmt.Errorf("%s: %w: %s lists it as %s, %s does not list it", file, ErrInconsistent, ManifestFile, kind, SumsFile))
		case listed != strings.ToLower(sha):
			r.problem(fmt.Errorf("%s: %w: %s gives sha256 %s, %s lists %s", file, ErrInconsistent, ManifestFile, sha, SumsFile, listed))
		}
	}
	for _, o := range m.Outputs {
		check("an output", o.File, o.SHA256)
	}
	for _, d := range m.Downloads {
		check("a download", d.File, d.SHA256)
	}
	if m.Inventory != nil {
		check("its file inventory", m.Inventory.File, m.Inventory.SHA256)
	}
	r.Outputs, r.Downloads, r.Inventory = len(m.Outputs), len(m.Downloads), m.Inventory != nil
}

// spdxDoc is the part of an SPDX 2.x JSON document that VerifyDir reads: the files it
// describes, with their checksums (SPDX 2.3, clause 8).
type spdxDoc struct {
	SPDXVersion string `json:"spdxVersion"`
	Files       []struct {
		FileName  string `json:"fileName"`
		Checksums []struct {
			Algorithm string `json:"algorithm"`
			Value     string `json:"checksumValue"`
		} `json:"checksums"`
	} `json:"files"`
}

// checkSPDX looks each output of the manifest up in the SPDX SBOM, when there is one: it must be
// described there, with the sha256 the manifest gives.
func (r *Report) checkSPDX(root *os.Root, m *manifest.Manifest) {
	f, err := root.Open(SPDXFile)
	if errors.Is(err, fs.ErrNotExist) {
		return
	}
	r.SBOM = SPDXFile
	if err != nil {
		r.problem(fmt.Errorf("%s: %w", SPDXFile, err))
		return
	}
	defer f.Close()
	var doc spdxDoc
	if err := json.NewDecoder(f).Decode(&doc); err != nil {
		r.problem(fmt.Errorf("%s: %w: not JSON: %w", SPDXFile, ErrMalformed, err))
		return
	}
	if !strings.HasPrefix(doc.SPDXVersion, "SPDX-") {
		r.problem(fmt.Errorf("%s: %w: no spdxVersion: not an SPDX document", SPDXFile, ErrMalformed))
		return
	}
	described := map[string][]string{} // file → its SHA256 checksums
	for _, file := range doc.Files {
		// SPDX writes a file's name relative to the package, usually with a leading "./".
		name := path.Clean(strings.TrimPrefix(file.FileName, "./"))
		for _, c := range file.Checksums {
			if c.Algorithm == "SHA256" {
				described[name] = append(described[name], strings.ToLower(c.Value))
			}
		}
		if _, ok := described[name]; !ok {
			described[name] = nil
		}
	}
	for _, o := range m.Outputs {
		shas, ok := described[path.Clean(o.File)]
		switch {
		case !ok:
			r.problem(fmt.Errorf("%s: %w: %s lists it as an output, %s does not describe it", o.File, ErrInconsistent, ManifestFile, SPDXFile))
		case len(shas) == 0:
			r.problem(fmt.Errorf("%s: %w: %s describes it without a SHA256 checksum", o.File, ErrInconsistent, SPDXFile))
		case !slices.Contains(shas, strings.ToLower(o.SHA256)):
			r.problem(fmt.Errorf("%s: %w: %s gives sha256 %s, %s gives %s", o.File, ErrInconsistent, ManifestFile, o.SHA256, SPDXFile, strings.Join(shas, ", ")))
		}
	}
}

func isSHA256(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}
