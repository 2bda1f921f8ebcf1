package cache

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string // substring of the error; "" means no error
	}{
		{in: "0", want: 0},
		{in: "1073741824", want: 1 << 30},
		{in: "500M", want: 500 << 20},
		{in: "20G", want: 20 << 30},
		{in: "20g", want: 20 << 30},
		{in: " 20G ", want: 20 << 30},
		{in: "2 GiB", want: 2 << 30},
		{in: "2GB", want: 2 << 30},
		{in: "1.5G", want: 3 << 29},
		{in: "1T", want: 1 << 40},
		{in: "64K", want: 64 << 10},
		{in: "64kib", want: 64 << 10},
		{in: "100B", want: 100},
		{in: "", err: "not a number"},
		{in: "G", err: "not a number"},
		{in: "-1G", err: "not a number"},
		{in: "20X", err: `unknown unit "X"`},
		{in: "20 GiBs", err: "unknown unit"},
		{in: "1.2.3G", err: "not a number"},
		{in: ".", err: "not a number"},
		{in: "9999999999T", err: "too large"},
		{in: "99999999999999999999", err: "too large"},
		{in: "1e30T", err: "unknown unit"},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSize(tc.in)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				if tc.err != "too large" {
					require.ErrorContains(t, err, "20G", "the error shows a valid size")
				}
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func TestParseMax(t *testing.T) {
	for _, in := range []string{"off", "none", "Unlimited"} {
		n, err := ParseMax(in)
		require.NoError(t, err, in)
		require.Equal(t, Unlimited, n, in)
	}
	n, err := ParseMax("0")
	require.NoError(t, err)
	require.Zero(t, n)
	_, err = ParseMax("lots")
	require.Error(t, err)
}

func TestBoundFromEnvironment(t *testing.T) {
	t.Setenv(EnvMax, "")
	c, err := Open(t.TempDir())
	require.NoError(t, err)
	require.Equal(t, DefaultMax, c.Max())
	require.Contains(t, c.Bound(), "default")

	t.Setenv(EnvMax, "500M")
	c, err = Open(t.TempDir())
	require.NoError(t, err)
	require.EqualValues(t, 500<<20, c.Max())
	require.Equal(t, "500 MiB (L45_CACHE_MAX=500M)", c.Bound())

	t.Setenv(EnvMax, "off")
	c, err = Open(t.TempDir())
	require.NoError(t, err)
	require.Equal(t, Unlimited, c.Max())

	t.Setenv(EnvMax, "20X")
	_, err = Open(t.TempDir())
	require.ErrorContains(t, err, `L45_CACHE_MAX="20X" is invalid`)
	require.ErrorContains(t, err, `"off"`)
}

func TestFormatSize(t *testing.T) {
	for n, want := range map[int64]string{
		0:                  "0 B",
		1023:               "1023 B",
		1024:               "1 KiB",
		1536:               "1.5 KiB",
		75 << 20:           "75 MiB",
		(1 << 20) - 1:      "1 MiB",
		30 << 30:           "30 GiB",
		5<<30 + 100<<20:    "5.1 GiB",
		Unlimited:          "none",
		3<<40 + 512<<30:    "3.5 TiB",
		1 << 50 /* PiB */ : "1 PiB",
	} {
		require.Equal(t, want, FormatSize(n), "%d", n)
	}
}
