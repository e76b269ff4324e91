package recipes

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
)

// Sizes have one meaning: every unit is a power of 1024, whether it is written 2G or 2GiB, as
// qemu-img and QEMU's -m read them. Decimal units (KB, MB, GB, TB) are refused rather than
// guessed at: "8GB" means 8×1000³ to a disk vendor and 8×1024³ to most tools, and a recipe must not
// depend on which the reader assumed. A bare number is refused too: 2048 is MiB to QEMU's -m and
// bytes to qemu-img.
const (
	KiB int64 = 1 << (10 * (iota + 1))
	MiB
	GiB
	TiB
)

const sizeHint = "use a number with a unit, e.g. 2GiB (B, K or KiB, M or MiB, G or GiB, T or TiB; all powers of 1024)"

var sizeRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)\s?([A-Za-z]*)$`)

// ParseSize reads a size such as "2GiB", "2G", "512MiB", "1.5G" or "4096B" into bytes. See the
// comment on KiB for the units and why decimal units are refused.
func ParseSize(s string) (int64, error) {
	n, msg, hint := parseSize(s)
	if msg != "" {
		return 0, fmt.Errorf("%s; %s", msg, hint)
	}
	return n, nil
}

// parseSize returns the size, or a message and a hint for the error.
func parseSize(s string) (n int64, msg, hint string) {
	m := sizeRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil {
		return 0, fmt.Sprintf("%q is not a size", s), sizeHint
	}
	number, unit := m[1], m[2]
	var mult int64
	switch strings.ToLower(unit) {
	case "":
		return 0, fmt.Sprintf("%q has no unit", s), fmt.Sprintf("write %sMiB or %sGiB, say; a bare number is ambiguous", number, number)
	case "b":
		mult = 1
	case "k", "kib":
		mult = KiB
	case "m", "mib":
		mult = MiB
	case "g", "gib":
		mult = GiB
	case "t", "tib":
		mult = TiB
	case "kb", "mb", "gb", "tb":
		bin := strings.ToUpper(unit[:1]) + "iB"
		return 0, fmt.Sprintf("%q uses a decimal unit (%s)", s, unit),
			fmt.Sprintf("ingot sizes are binary: write %s%s (or %s%s), which is %s×1024^%d bytes", number, bin, number, strings.ToUpper(unit[:1]), number, strings.Index("KMGT", strings.ToUpper(unit[:1]))+1)
	default:
		return 0, fmt.Sprintf("%q is not a size (unknown unit %q)", s, unit), sizeHint
	}
	r, ok := new(big.Rat).SetString(number)
	if !ok {
		return 0, fmt.Sprintf("%q is not a size", s), sizeHint
	}
	r.Mul(r, new(big.Rat).SetInt64(mult))
	if !r.IsInt() {
		return 0, fmt.Sprintf("%q is not a whole number of bytes", s), "use a smaller unit, e.g. 1536MiB rather than 1.5000001GiB"
	}
	if !r.Num().IsInt64() || r.Num().Int64() > 1<<62 {
		return 0, fmt.Sprintf("%q is too large", s), "sizes go up to 4194304TiB"
	}
	return r.Num().Int64(), "", ""
}

// FormatSize renders bytes in the largest unit that divides them exactly: 2GiB, 1536MiB, 512B.
// ParseSize reads the result back to the same number.
func FormatSize(n int64) string {
	units := []struct {
		name string
		size int64
	}{{"TiB", TiB}, {"GiB", GiB}, {"MiB", MiB}, {"KiB", KiB}}
	for _, u := range units {
		if n != 0 && n%u.size == 0 {
			return strconv.FormatInt(n/u.size, 10) + u.name
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}
