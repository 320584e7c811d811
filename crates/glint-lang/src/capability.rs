//! What the build running the compiler can do: the capabilities it enforces
//! and the providers it has. Both are inputs of a compilation
//! ([`crate::CompileOptions`]), passed by the CLI, so that the language never
//! guesses what the rest of Glint does.
//!
//! A declaration that asks for a capability the build does not enforce (a
//! firewall `rule` while nothing programs a firewall) compiles, with one
//! warning per capability saying so: a user must never believe a rule
//! protects them when nothing enforces it. When a later version of Glint
//! enforces a capability, the CLI adds it to the set and the warning goes,
//! with no change in this crate.
//!
//! A service whose provider the build does not have (`provider =
//! simulated` in the `glint` binary) is an error: it could never launch.

use crate::codes::Code;
use glint_model::ProviderKind;
use std::collections::BTreeSet;
use std::fmt;

/// Something a declaration may ask for that Glint enforces at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// `rule` declarations: network permissions programmed into a firewall.
    FirewallRules,
    /// `variable` declarations with a literal or runtime value: values
    /// delivered to their readers, with read and write access enforced.
    /// (Secret variables are always delivered, to `/run/secrets/NAME`, and
    /// never warned about.)
    Variables,
    /// `volume` declarations and services' `mounts`: persistent data
    /// mounted into instances.
    Volumes,
    /// A service's `autoscale` bounds: the instance count follows the load.
    Autoscale,
    /// A service's `resources` limits on the process provider (Docker
    /// enforces its own).
    ProcessResourceLimits,
}

impl Capability {
    /// Every capability, in order.
    pub const ALL: &'static [Capability] = &[
        Capability::FirewallRules,
        Capability::Variables,
        Capability::Volumes,
        Capability::Autoscale,
        Capability::ProcessResourceLimits,
    ];

    /// A stable name (`firewall-rules`), for flags and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Capability::FirewallRules => "firewall-rules",
            Capability::Variables => "variables",
            Capability::Volumes => "volumes",
            Capability::Autoscale => "autoscale",
            Capability::ProcessResourceLimits => "process-resource-limits",
        }
    }

    /// The code of the warning given when it is declared but not enforced.
    pub fn code(self) -> Code {
        match self {
            Capability::FirewallRules => Code::RulesNotEnforced,
            Capability::Variables => Code::VariablesNotEnforced,
            Capability::Volumes => Code::VolumesNotEnforced,
            Capability::Autoscale => Code::AutoscaleNotEnforced,
            Capability::ProcessResourceLimits => Code::ResourcesNotEnforced,
        }
    }

    /// What is declared, for the warning's first line (`firewall rules
    /// are ...`).
    pub(crate) fn declared(self) -> &'static str {
        match self {
            Capability::FirewallRules => "firewall rules",
            Capability::Variables => "literal and runtime variables",
            Capability::Volumes => "volumes and mounts",
            Capability::Autoscale => "autoscaling bounds",
            Capability::ProcessResourceLimits => "resource limits of process instances",
        }
    }

    /// What a user must not rely on meanwhile.
    pub(crate) fn consequence(self) -> &'static str {
        match self {
            Capability::FirewallRules => {
                "nothing restricts network traffic: every instance can reach every other, and anyone who can reach the host can reach them"
            }
            Capability::Variables => {
                "literal and runtime variables are not delivered to their readers and their readers and writers are not checked (secret variables are: readers get `/run/secrets/NAME`)"
            }
            Capability::Volumes => {
                "no volume is created or mounted: data written at a mount path is lost when the instance is replaced"
            }
            Capability::Autoscale => {
                "the service runs its declared `instances` count whatever the load"
            }
            Capability::ProcessResourceLimits => {
                "process instances can use as much memory and CPU as the host gives them (the Docker provider enforces limits)"
            }
        }
    }

    /// Parses a [`Capability::name`].
    pub fn from_name(s: &str) -> Option<Capability> {
        Capability::ALL.iter().copied().find(|c| c.name() == s)
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The capabilities a build enforces.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capabilities {
    set: BTreeSet<Capability>,
}

impl Capabilities {
    /// None enforced (every use is warned about). The default.
    pub fn none() -> Capabilities {
        Capabilities::default()
    }

    /// Every capability enforced (no warnings): tests and tools that do not
    /// run anything.
    pub fn all() -> Capabilities {
        Capability::ALL.iter().copied().collect()
    }

    /// Adds one.
    pub fn insert(&mut self, c: Capability) -> &mut Self {
        self.set.insert(c);
        self
    }

    /// This set plus `c`.
    pub fn with(mut self, c: Capability) -> Capabilities {
        self.set.insert(c);
        self
    }

    /// Whether `c` is enforced.
    pub fn contains(&self, c: Capability) -> bool {
        self.set.contains(&c)
    }

    /// The enforced capabilities, in order.
    pub fn iter(&self) -> impl Iterator<Item = Capability> + '_ {
        self.set.iter().copied()
    }
}

impl FromIterator<Capability> for Capabilities {
    fn from_iter<I: IntoIterator<Item = Capability>>(iter: I) -> Self {
        Capabilities {
            set: iter.into_iter().collect(),
        }
    }
}

/// The providers a build has (a service may only use these).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderSet {
    set: BTreeSet<ProviderKind>,
}

impl ProviderSet {
    /// Every provider kind the language knows. The default: a compilation
    /// that does not say what its build has accepts them all.
    pub fn all() -> ProviderSet {
        [
            ProviderKind::Process,
            ProviderKind::Docker,
            ProviderKind::Simulated,
            ProviderKind::Aws,
        ]
        .into_iter()
        .collect()
    }

    /// Exactly these.
    pub fn of(kinds: impl IntoIterator<Item = ProviderKind>) -> ProviderSet {
        kinds.into_iter().collect()
    }

    /// Whether the build has `kind`.
    pub fn contains(&self, kind: ProviderKind) -> bool {
        self.set.contains(&kind)
    }

    /// The providers, in order.
    pub fn iter(&self) -> impl Iterator<Item = ProviderKind> + '_ {
        self.set.iter().copied()
    }
}

impl Default for ProviderSet {
    fn default() -> Self {
        ProviderSet::all()
    }
}

impl FromIterator<ProviderKind> for ProviderSet {
    fn from_iter<I: IntoIterator<Item = ProviderKind>>(iter: I) -> Self {
        ProviderSet {
            set: iter.into_iter().collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_each_capability_has_its_own_code() {
        let mut codes = BTreeSet::new();
        for c in Capability::ALL {
            assert_eq!(Capability::from_name(c.name()), Some(*c));
            assert!(codes.insert(c.code()), "{c} shares its code");
        }
        assert!(Capabilities::all().contains(Capability::Volumes));
        assert!(!Capabilities::none().contains(Capability::Volumes));
        assert!(!ProviderSet::of([ProviderKind::Process]).contains(ProviderKind::Docker));
    }
}
