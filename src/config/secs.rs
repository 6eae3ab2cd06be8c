//! [`Secs`]: a duration written as `90s`, `10m`, `1h`, `2d` or plain seconds.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A duration written as `90s`, `10m`, `1h`, `2d`, or a plain number of seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Secs(pub Duration);

impl Secs {
    pub const fn from_secs(s: u64) -> Self {
        Secs(Duration::from_secs(s))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for Secs {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let t = s.trim();
        let (num, mult) = match t.char_indices().last() {
            Some((i, 's')) => (&t[..i], 1),
            Some((i, 'm')) => (&t[..i], 60),
            Some((i, 'h')) => (&t[..i], 3600),
            Some((i, 'd')) => (&t[..i], 86_400),
            _ => (t, 1),
        };
        let n: u64 = num.trim().parse().map_err(|_| {
            format!(
                "`{}` is not a duration; write a whole number with a unit, e.g. 90s, 10m, 1h, 2d",
                s.escape_debug()
            )
        })?;
        n.checked_mul(mult)
            .map(Secs::from_secs)
            .ok_or_else(|| format!("`{}` is too large", s.escape_debug()))
    }
}

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.0.as_secs();
        if s != 0 && s % 86_400 == 0 {
            write!(f, "{}d", s / 86_400)
        } else if s != 0 && s % 3600 == 0 {
            write!(f, "{}h", s / 3600)
        } else if s != 0 && s % 60 == 0 {
            write!(f, "{}m", s / 60)
        } else {
            write!(f, "{s}s")
        }
    }
}

impl Serialize for Secs {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for Secs {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Secs;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as \"90s\", \"10m\", \"1h\" or a number of seconds")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> std::result::Result<Secs, E> {
                Ok(Secs::from_secs(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> std::result::Result<Secs, E> {
                u64::try_from(v)
                    .map(Secs::from_secs)
                    .map_err(|_| E::custom(format!("{v} is negative; a duration must be >= 0")))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> std::result::Result<Secs, E> {
                v.parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V)
    }
}
