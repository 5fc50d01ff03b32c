//! A value that must never reach a log, an error message or `config check`.

use std::fmt;

use std::marker::PhantomData;
use std::path::PathBuf;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use std::path::Path;

use crate::settings::ConfigError;

#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The only way to read the value; call it where the value is sent, nowhere else.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

const REDACTED: &str = "<redacted>";

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(REDACTED)
    }
}

/// The YAML keys of one secret reference: `<name>_file` (a mounted Secret), `<name>_env`
/// (an environment variable), and `<name>`, the value read from either: printed as
/// `<redacted>` and never read from the file (a secret is never written inline).
pub trait RefKeys: 'static {
    const FILE: &'static str;
    const ENV: &'static str;
    const VALUE: &'static str;
    /// What it is, in errors: "the Slack webhook".
    const WHAT: &'static str;
}

/// A secret named by file or by environment variable, resolved once at load time.
/// Flattened into its section (`#[serde(flatten)]`), so its keys sit beside the
/// section's own: `slack_webhook_file: /run/secrets/hook`.
pub struct SecretRef<K> {
    pub file: Option<PathBuf>,
    pub env: Option<String>,
    value: Option<Secret>,
    keys: PhantomData<fn() -> K>,
}

impl<K> Clone for SecretRef<K> {
    fn clone(&self) -> Self {
        SecretRef {
            file: self.file.clone(),
            env: self.env.clone(),
            value: self.value.clone(),
            keys: PhantomData,
        }
    }
}

impl<K> Default for SecretRef<K> {
    fn default() -> Self {
        SecretRef {
            file: None,
            env: None,
            value: None,
            keys: PhantomData,
        }
    }
}

impl<K: RefKeys> fmt::Debug for SecretRef<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretRef")
            .field(K::FILE, &self.file)
            .field(K::ENV, &self.env)
            .field(K::VALUE, &self.value)
            .finish()
    }
}

impl<K: RefKeys> SecretRef<K> {
    /// Named by an environment variable and already read (the one-variable setups).
    pub fn from_env(name: &str, value: Secret) -> Self {
        SecretRef {
            env: Some(name.to_owned()),
            value: Some(value),
            ..SecretRef::default()
        }
    }

    /// The value, once resolved.
    pub fn get(&self) -> Option<&Secret> {
        self.value.as_ref()
    }

    pub fn is_some(&self) -> bool {
        self.value.is_some()
    }

    /// The file or environment variable named, if any (before `resolve`).
    pub fn is_named(&self) -> bool {
        self.file.is_some() || self.env.is_some()
    }

    /// Reads the file or the variable; `field` names the entry in errors.
    pub(crate) fn resolve(&mut self, field: &str) -> Result<(), ConfigError> {
        self.value = read_secret_ref(field, self.file.as_deref(), self.env.as_deref())?;
        Ok(())
    }

    /// An http(s) URL with a host, checked for shape only: the error never repeats it.
    pub(crate) fn check_url(&self, field: &str) -> Result<(), ConfigError> {
        let Some(url) = &self.value else {
            return Ok(());
        };
        match reqwest::Url::parse(url.expose()) {
            Ok(u) if matches!(u.scheme(), "https" | "http") && u.host().is_some() => Ok(()),
            _ => Err(ConfigError::Invalid(format!(
                "{field}: {} is not an http(s) URL",
                K::WHAT
            ))),
        }
    }
}

impl<K: RefKeys> Serialize for SecretRef<K> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("SecretRef", 3)?;
        st.serialize_field(K::FILE, &self.file)?;
        st.serialize_field(K::ENV, &self.env)?;
        st.serialize_field(K::VALUE, &self.value)?;
        st.end()
    }
}

impl<'de, K: RefKeys> Deserialize<'de> for SecretRef<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<K>(PhantomData<fn() -> K>);
        impl<'de, K: RefKeys> Visitor<'de> for V<K> {
            type Value = SecretRef<K>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{} or {}", K::FILE, K::ENV)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = SecretRef::<K>::default();
                while let Some(key) = map.next_key::<String>()? {
                    let value = map.next_value::<Option<Scalar>>()?.map(|v| v.0);
                    if key == K::FILE {
                        out.file = value.map(PathBuf::from);
                    } else if key == K::ENV {
                        out.env = value;
                    } else {
                        return Err(de::Error::unknown_field(&key, &[K::FILE, K::ENV]));
                    }
                }
                Ok(out)
            }
        }
        // Flattened, only these two keys are handed over; `<name>` itself stays unknown
        // to the section, so a secret written inline is refused.
        d.deserialize_struct("SecretRef", &[K::FILE, K::ENV], V(PhantomData))
    }
}

/// The keys a section accepts, for its error on any other.
pub trait KnownKeys: 'static {
    const KEYS: &'static [&'static str];
}

/// The last flattened field of a section that flattens a [`SecretRef`] (serde's
/// `deny_unknown_fields` cannot name the accepted keys then): refuses any key left over,
/// naming the accepted ones as before.
pub struct DenyUnknown<T>(PhantomData<fn() -> T>);

impl<T> Default for DenyUnknown<T> {
    fn default() -> Self {
        DenyUnknown(PhantomData)
    }
}

impl<T> Clone for DenyUnknown<T> {
    fn clone(&self) -> Self {
        DenyUnknown(PhantomData)
    }
}

impl<T> fmt::Debug for DenyUnknown<T> {
    fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
        Ok(())
    }
}

impl<'de, T: KnownKeys> Deserialize<'de> for DenyUnknown<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<fn() -> T>);
        impl<'de, T: KnownKeys> Visitor<'de> for V<T> {
            type Value = DenyUnknown<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("known keys only")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                if let Some(key) = map.next_key::<String>()? {
                    return Err(de::Error::unknown_field(&key, T::KEYS));
                }
                Ok(DenyUnknown(PhantomData))
            }
        }
        d.deserialize_map(V(PhantomData))
    }
}

/// A path or variable name: YAML may give a plain scalar that looks like a number.
struct Scalar(String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        d.deserialize_any(V)
    }
}

/// A secret named in the config by file or by environment variable (never inline);
/// `field` names the config entry in errors.
pub(crate) fn read_secret_ref(
    field: &str,
    file: Option<&Path>,
    env: Option<&str>,
) -> Result<Option<Secret>, ConfigError> {
    match (file, env) {
        (Some(_), Some(_)) => Err(ConfigError::Invalid(format!(
            "{field}: set a file or an environment variable, not both"
        ))),
        (Some(f), None) => read_secret_file(f)
            .map(|v| Some(Secret::new(v)))
            .map_err(|m| ConfigError::Invalid(format!("{field}: {m}"))),
        (None, Some(name)) => match std::env::var(name) {
            Ok(v) if !v.trim().is_empty() => Ok(Some(Secret::new(v.trim()))),
            _ => Err(ConfigError::Invalid(format!(
                "{field}: environment variable {name} is not set"
            ))),
        },
        (None, None) => Ok(None),
    }
}

pub(crate) fn read_secret_file(path: &Path) -> Result<String, String> {
    let v = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let v = v.trim();
    if v.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(v.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_printed() {
        let s = Secret::new("0123456789abcdef");
        assert_eq!(format!("{s:?} {s}"), "<redacted> <redacted>");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"<redacted>\"");
        assert_eq!(s.expose(), "0123456789abcdef");
    }
}
