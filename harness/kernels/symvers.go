package kernels

import (
	"fmt"
	"os"
	"strings"
)

// Exports are the symbols a Module.symvers lists (a kernel build's, or an
// out-of-tree module build's): what modules built against it can link to.
func Exports(symvers string) (map[string]bool, error) {
	b, err := os.ReadFile(symvers)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, l := range strings.Split(string(b), "\n") {
		// CRC, symbol, module, export type[, namespace]
		if f := strings.Split(l, "\t"); len(f) >= 4 {
			out[f[1]] = true
		} else if strings.TrimSpace(l) != "" {
			return nil, fmt.Errorf("%s: not a Module.symvers line: %q", symvers, l)
		}
	}
	return out, nil
}
