package qemuimg

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// CheckResult is `qemu-img check --output=json` (QAPI ImageCheck, since QEMU 1.4): what a
// consistency check of an image's metadata found. The counts a format does not report stay 0
// (vmdk and vhdx report check errors only).
type CheckResult struct {
	Filename string `json:"filename"`
	Format   string `json:"format"`
	// Corruptions is how many errors qemu-img found in the metadata: data may be lost or read
	// wrong.
	Corruptions int64 `json:"corruptions"`
	// Leaks is how many clusters are allocated but used by nothing: wasted space, no harm to
	// data.
	Leaks int64 `json:"leaks"`
	// CheckErrors is how many checks could not be made (an I/O error while reading metadata).
	CheckErrors int64 `json:"check-errors"`
}

// Clean reports whether the check found nothing wrong.
func (r CheckResult) Clean() bool {
	return r.Corruptions == 0 && r.Leaks == 0 && r.CheckErrors == 0
}

// problems names what the check found, e.g. "2 corruptions, 1 leaked cluster".
func (r CheckResult) problems() string {
	var p []string
	for _, c := range []struct {
		n          int64
		one, other string
	}{
		{r.Corruptions, "corruption", "corruptions"},
		{r.Leaks, "leaked cluster", "leaked clusters"},
		{r.CheckErrors, "check error", "check errors"},
	} {
		switch {
		case c.n == 1:
			p = append(p, "1 "+c.one)
		case c.n > 1:
			p = append(p, fmt.Sprintf("%d %s", c.n, c.other))
		}
	}
	return strings.Join(p, ", ")
}

// Check runs qemu-img check on the image at path, in format, which must be one that has a check
// (qcow2, vmdk, vhdx…; raw has none). It never repairs. The result is what qemu-img found, and
// is returned whenever qemu-img checked the image; err is also non-nil when the image is not
// Clean (it then names the counts, and carries qemu-img's stderr, which lists each problem), or
// when qemu-img could not check it at all.
//
// qemu-img check exits 2 on corruptions and 3 on leaks alone, with its report on stdout all the
// same; 1 when it could not check, 63 for a format without a check.
func Check(ctx context.Context, path, format string) (CheckResult, error) {
	if err := needFormat("check "+path, format); err != nil {
		return CheckResult{}, err
	}
	out, runErr := output(ctx, "check", "-f", format, "--output=json", path)
	r, err := decodeCheck(out)
	switch {
	case err != nil && runErr != nil: // no report: qemu-img's own error says why
		return CheckResult{}, fmt.Errorf("check %s: %w", path, runErr)
	case err != nil:
		return CheckResult{}, fmt.Errorf("check %s: %w", path, err)
	case !r.Clean() && runErr != nil:
		return r, fmt.Errorf("check %s: %s: %w", path, r.problems(), runErr)
	case !r.Clean():
		return r, fmt.Errorf("check %s: %s", path, r.problems())
	case runErr != nil:
		return r, fmt.Errorf("check %s: %w", path, runErr)
	}
	return r, nil
}

func decodeCheck(out []byte) (CheckResult, error) {
	var r CheckResult
	if err := json.Unmarshal(out, &r); err != nil {
		return CheckResult{}, fmt.Errorf("decode qemu-img check: %w", err)
	}
	if r.Format == "" {
		return CheckResult{}, errors.New("decode qemu-img check: no format")
	}
	return r, nil
}
