//! The language applies the defaults documented in `glint_model::defaults`:
//! a service (and health check) with every optional field left out compiles
//! to exactly the model's constructors.

#![allow(clippy::unwrap_used)]

use glint_model::{HealthCheck, Image, Name, Probe, Rollout, Service};

#[test]
fn left_out_fields_get_the_model_defaults() {
    let c = glint_lang::compile_str(
        "main.glint",
        r#"
image app {
  from = scratch
  entrypoint = ["/app"]
}
service web {
  image = image.app
}
service api {
  image = image.app
  health {
    http = "/healthz"
  }
  rollout {
    min_healthy = 0s
  }
}
"#,
    );
    assert!(!c.has_errors(), "{}", c.diagnostics.render_human(false));
    let env = c.environment.unwrap();
    let app = Name::new("app").unwrap();
    assert_eq!(env.images[&app], Image::scratch(vec!["/app".into()]));
    assert_eq!(
        env.services[&Name::new("web").unwrap()],
        Service::new(app.clone())
    );
    let api = &env.services[&Name::new("api").unwrap()];
    assert_eq!(
        api.health,
        Some(HealthCheck::new(Probe::Http {
            path: "/healthz".into()
        }))
    );
    assert_eq!(api.rollout, Rollout::default());
}
