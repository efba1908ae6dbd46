// <gateway-challenge> for mini-programs: a custom component that renders
// nothing, starts the check, and triggers `challengesuccess` /
// `challengefail` (bind them as bindchallengesuccess / bindchallengefail).
// Configure the client once in app.js: configure({ base: 'https://your.gateway' }).
import { client } from '../../src/index.js';

Component({
  lifetimes: {
    attached() {
      const pc = client();
      pc.start();
      pc.getClearance().then((res) => {
        this.triggerEvent(res.success ? 'challengesuccess' : 'challengefail', res);
      });
    },
  },
  methods: {
    // Pages may forward taps here to count interactions: <view bindtap="...">.
    onTouch() { client().recordInteraction('touch'); },
  },
});
