//! Serde plumbing for the networking kinds' proto enums (validation helpers live in
//! [`crate::validate`]).

/// Defines a protobuf enum that (de)serializes by its proto value name and refuses unknown
/// names with Kubernetes' `Unsupported value` wording. The first variant is the proto default.
macro_rules! istio_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            #[default]
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in proto order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as the proto (and YAML) spells it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(f, "one of {}", $crate::networking::destination_rule::checks::quoted_list(&[$($text),+]))
                    }
                    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        match v {
                            $($text => Ok($name::$variant),)+
                            _ => Err(E::custom(format!(
                                "Unsupported value: {v:?}: supported values: {}",
                                $crate::networking::destination_rule::checks::quoted_list(&[$($text),+])
                            ))),
                        }
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}
pub(crate) use istio_enum;

/// `"A", "B", "C"`, as Kubernetes lists supported values.
pub fn quoted_list(values: &[&str]) -> String {
    values
        .iter()
        .map(|v| format!("{v:?}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// serde `skip_serializing_if` helper: true for a type's default value.
pub fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}
