//! Reading IP list entries: one per config value, or a file of one per line.

use ipnet::IpNet;
use model::NetError;

/// A list file's first bad entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {error}")]
pub struct ListError {
    /// 1-based, as an editor counts.
    pub line: usize,
    /// What is wrong with the entry on that line.
    pub error: NetError,
}

/// Parses a list file: one address or CIDR per line. `#` starts a comment, on a line of its
/// own or after the entry; blank lines are skipped and whitespace around an entry trimmed.
/// Each entry follows [`parse_net`]'s rules.
///
/// ```
/// use shield::iplist::parse_list;
///
/// let nets = parse_list("# office\n192.0.2.0/24\n2001:db8::1  # the VPN gateway\n").unwrap();
/// assert_eq!(nets.len(), 2);
///
/// let error = parse_list("10.0.0.0/8\n10.1.2.3/8\n").unwrap_err();
/// assert_eq!(error.line, 2);
/// ```
pub fn parse_list(text: &str) -> Result<Vec<IpNet>, ListError> {
    let mut nets = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let entry = match line.split_once('#') {
            Some((entry, _comment)) => entry,
            None => line,
        }
        .trim();
        if entry.is_empty() {
            continue;
        }
        let net = parse_net(entry).map_err(|error| ListError {
            line: index + 1,
            error,
        })?;
        nets.push(net);
    }
    Ok(nets)
}

// One entry's rules live in `model`, which reads the config's own list values the same way.
pub use model::parse_net;

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn bare_addresses_are_single_host_prefixes() {
        assert_eq!(parse_net("192.0.2.7"), Ok(net("192.0.2.7/32")));
        assert_eq!(parse_net("2001:db8::7"), Ok(net("2001:db8::7/128")));
    }

    #[test]
    fn cidrs_of_both_families_parse_with_whitespace_trimmed() {
        assert_eq!(parse_net("  10.0.0.0/8\t"), Ok(net("10.0.0.0/8")));
        assert_eq!(parse_net("2001:db8::/32"), Ok(net("2001:db8::/32")));
        assert_eq!(parse_net("0.0.0.0/0"), Ok(net("0.0.0.0/0")));
        assert_eq!(parse_net("::/0"), Ok(net("::/0")));
    }

    #[test]
    fn host_bits_set_is_an_error_that_suggests_the_network() {
        let message = parse_net("10.1.2.3/8").unwrap_err().to_string();
        assert!(message.contains("host bits"), "{message}");
        assert!(message.contains("`10.0.0.0/8`"), "{message}");
        let message = parse_net("2001:db8::1/32").unwrap_err().to_string();
        assert!(message.contains("`2001:db8::/32`"), "{message}");
    }

    #[test]
    fn malformed_entries_are_errors() {
        for bad in [
            "",
            "   ",
            "10.0.0",
            "10.0.0.256",
            "example.com",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/8/8",
            "::/129",
            "fe80::1%eth0",
            "10.0.0.0 /8",
        ] {
            assert!(parse_net(bad).is_err(), "`{bad}` should be refused");
        }
    }

    #[test]
    fn prefix_length_out_of_range_names_the_limit() {
        let message = |entry| parse_net(entry).unwrap_err().to_string();
        assert!(message("10.0.0.0/33").contains("0 to 32"));
        assert!(message("::/129").contains("0 to 128"));
    }

    #[test]
    fn list_skips_comments_and_blank_lines() {
        let text = "\
# deny list for the example site

10.0.0.0/8          # RFC 1918
   192.0.2.1
#2001:db8::/32  commented out
2001:db8:1::/48#no space before the comment
\r
";
        assert_eq!(
            parse_list(text),
            Ok(vec![
                net("10.0.0.0/8"),
                net("192.0.2.1/32"),
                net("2001:db8:1::/48")
            ])
        );
    }

    #[test]
    fn list_of_only_comments_is_empty() {
        assert_eq!(parse_list(""), Ok(vec![]));
        assert_eq!(
            parse_list("# nothing yet\n\n   # still nothing\n"),
            Ok(vec![])
        );
    }

    #[test]
    fn list_errors_name_the_one_based_line() {
        let error = parse_list("# header\n10.0.0.0/8\n\n10.1.2.3/8  # oops\n").unwrap_err();
        assert_eq!(error.line, 4);
        assert!(
            error.error.to_string().contains("`10.0.0.0/8`"),
            "{}",
            error.error
        );
        assert!(error.to_string().starts_with("line 4: "), "{error}");

        let error = parse_list("not-an-ip").unwrap_err();
        assert_eq!(error.line, 1);
    }

    #[test]
    fn list_accepts_windows_line_endings() {
        assert_eq!(
            parse_list("10.0.0.0/8\r\n::1\r\n"),
            Ok(vec![net("10.0.0.0/8"), net("::1/128")])
        );
    }
}
