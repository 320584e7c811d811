//! What policies see: the compiled declarations, behind the lists
//! `services`, `rules`, ... of references.
//!
//! A reference's fields are read lazily from the compiled environment
//! through the schema's view functions ([`crate::schema`]), with every
//! default applied, so that policies over 100,000 declarations build nothing
//! they do not read. The evaluator reaches this through the
//! [`DeclViews`] interface only.

use crate::eval::{DeclTable, DeclViews};
use crate::fxhash::FxMap;
use crate::schema::{ENDPOINT, IMAGE, NOTIFY, POLICY, RULE, SERVICE, VARIABLE, VOLUME};
use crate::source::Span;
use crate::value::{Kind, SV, Value};
use glint_model::{Environment, Name};
use std::cell::RefCell;
use std::rc::Rc;

/// The views of one compiled environment.
pub(crate) struct PolicyViews {
    env: Rc<Environment>,
    decls: Rc<DeclTable>,
    /// The lists built so far (a list is built when a policy first names
    /// it: the standard policies never read `endpoints`).
    lists: RefCell<FxMap<Kind, Value>>,
}

impl PolicyViews {
    /// Views of `env`; `decls` gives each declaration's name span (and its
    /// shared name), so that violations point at the declaration.
    pub fn new(env: Rc<Environment>, decls: Rc<DeclTable>) -> PolicyViews {
        PolicyViews {
            env,
            decls,
            lists: RefCell::new(FxMap::default()),
        }
    }

    fn build(&self, kind: Kind) -> Value {
        let env = &*self.env;
        let names: Vec<&Name> = match kind {
            Kind::Image => env.images.keys().collect(),
            Kind::Service => env.services.keys().collect(),
            Kind::Endpoint => env.endpoints.keys().collect(),
            Kind::Rule => env.rules.keys().collect(),
            Kind::Variable => env.variables.keys().collect(),
            Kind::Volume => env.volumes.keys().collect(),
            Kind::Notify => env.notify.keys().collect(),
            Kind::Policy => env.policies.keys().collect(),
            Kind::Environment => Vec::new(),
        };
        let items: Vec<SV> = names
            .into_iter()
            .map(|n| match self.decls.shared(kind, n.as_str()) {
                Some((name, span)) => SV {
                    v: Value::Ref(kind, name),
                    span,
                },
                None => SV {
                    v: Value::Ref(kind, Rc::from(n.as_str())),
                    span: Span::default(),
                },
            })
            .collect();
        Value::List(Rc::new(items))
    }
}

impl DeclViews for PolicyViews {
    fn list(&self, kind: Kind) -> Value {
        if let Some(v) = self.lists.borrow().get(&kind) {
            return v.clone();
        }
        let v = self.build(kind);
        self.lists.borrow_mut().insert(kind, v.clone());
        v
    }

    fn field(&self, kind: Kind, name: &str, field: &str) -> Option<Value> {
        if field == "name" {
            return Some(Value::Str(Rc::from(name)));
        }
        let env = &*self.env;
        match kind {
            Kind::Image => IMAGE.view(env.images.get(name)?, env, field),
            Kind::Service => SERVICE.view(env.services.get(name)?, env, field),
            Kind::Endpoint => ENDPOINT.view(env.endpoints.get(name)?, env, field),
            Kind::Rule => RULE.view(env.rules.get(name)?, env, field),
            Kind::Variable => VARIABLE.view(env.variables.get(name)?, env, field),
            Kind::Volume => VOLUME.view(env.volumes.get(name)?, env, field),
            Kind::Notify => NOTIFY.view(env.notify.get(name)?, env, field),
            Kind::Policy => POLICY.view(env.policies.get(name)?, env, field),
            Kind::Environment => None,
        }
    }

    fn field_names(&self, kind: Kind) -> Vec<&'static str> {
        match kind {
            Kind::Image => IMAGE.view_names(),
            Kind::Service => SERVICE.view_names(),
            Kind::Endpoint => ENDPOINT.view_names(),
            Kind::Rule => RULE.view_names(),
            Kind::Variable => VARIABLE.view_names(),
            Kind::Volume => VOLUME.view_names(),
            Kind::Notify => NOTIFY.view_names(),
            Kind::Policy => POLICY.view_names(),
            Kind::Environment => Vec::new(),
        }
    }
}
