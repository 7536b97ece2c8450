import { createApp } from 'vue';

import App from './App.vue';
import { boot } from './lib/chat';
import { locale } from './lib/i18n';
import './styles.css';

document.documentElement.lang = locale.value === 'zh' ? 'zh-CN' : 'en';
createApp(App).mount('#app');
void boot();
