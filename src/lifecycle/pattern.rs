//! Shell-style name patterns for enable/disable/restart: `*` matches any
//! run of characters (also none), `?` exactly one; everything else itself.

pub fn matches(pattern: &str, name: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let n: Vec<char> = name.chars().collect();
    // Greedy with one backtrack point (the last `*`): linear for any input.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == n[ni]) {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs() {
        for (pat, name, want) in [
            ("*", "anything", true),
            ("*", "", true),
            ("bgp*", "bgp1", true),
            ("bgp*", "xbgp1", false),
            ("?", "a", true),
            ("?", "ab", false),
            ("s?atic*", "static1", true),
            ("*1", "static1", true),
            ("*1", "static12", false),
            ("a*b*c", "aXbYbZc", true),
            ("a*b*c", "aXbYbZ", false),
            ("exact", "exact", true),
            ("exact", "exac", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(matches(pat, name), want, "{pat} vs {name}");
        }
    }
}
