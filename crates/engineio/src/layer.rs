//! A tower layer that puts an [`EngineIoService`] in front of a service.

use std::sync::Arc;

use tower_layer::Layer;

use crate::{config::EngineIoConfig, handler::EngineIoHandler, service::EngineIoService};

/// Wraps services with an Engine.IO server; requests outside its path go to the wrapped service.
#[derive(Debug, Clone)]
pub struct EngineIoLayer<H: EngineIoHandler> {
    config: EngineIoConfig,
    handler: Arc<H>,
}

impl<H: EngineIoHandler> EngineIoLayer<H> {
    /// A layer with the default settings.
    pub fn new(handler: Arc<H>) -> Self {
        Self::from_config(handler, EngineIoConfig::default())
    }
    /// A layer with `config`.
    pub fn from_config(handler: Arc<H>, config: EngineIoConfig) -> Self {
        Self { config, handler }
    }
}

impl<S: Clone, H: EngineIoHandler> Layer<S> for EngineIoLayer<H> {
    type Service = EngineIoService<H, S>;

    fn layer(&self, inner: S) -> Self::Service {
        EngineIoService::with_config_inner(inner, self.handler.clone(), self.config.clone())
    }
}
