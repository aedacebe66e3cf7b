//! The built-in `static` kind: the routes listed in its configuration.
//! Reconfiguration applies the difference in place.

use super::config::ProtoConfig;
use super::kind::{Export, Kind};
use super::runtime::Api;
use super::state::ProtoState;
use std::collections::HashMap;

pub struct StaticKind;

impl Kind for StaticKind {
    fn start(&self, api: &Api, proto: &str, config: &ProtoConfig) -> ProtoState {
        for r in &config.routes {
            if api.import_parsed(proto, r.prefix, None, r.attrs.clone()).is_err() {
                return ProtoState::Down;
            }
        }
        ProtoState::Up
    }

    fn shutdown(&self, _api: &Api, _proto: &str) -> ProtoState {
        ProtoState::Down
    }

    fn reconfigure(&self, api: &Api, proto: &str, old: &ProtoConfig, new: &ProtoConfig) -> bool {
        let wanted: HashMap<_, _> = new.routes.iter().map(|r| (r.prefix, &r.attrs)).collect();
        for r in &old.routes {
            if !wanted.contains_key(&r.prefix) && api.withdraw_parsed(proto, &r.prefix, false).is_err() {
                return false;
            }
        }
        let had: HashMap<_, _> = old.routes.iter().map(|r| (r.prefix, &r.attrs)).collect();
        for r in &new.routes {
            if had.get(&r.prefix) != Some(&&r.attrs) && api.import_parsed(proto, r.prefix, None, r.attrs.clone()).is_err() {
                return false;
            }
        }
        true
    }

    fn export(&self, _api: &Api, _proto: &str, _route: &Export<'_>) {}
}
