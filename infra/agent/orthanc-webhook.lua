-- Tells the pacs-agent on this host that a study has become stable in
-- Orthanc, so it is sent at once instead of at the next change-log poll.
--
-- The agent's URL is read from Orthanc's own configuration, key
-- "PacsAgentWebhook"; without it the agent's default address is used.
-- A failed call is only logged by Orthanc: the agent's change-log follower
-- (feature autoSync) still finds the study.

local config = GetOrthancConfiguration()
local url = config['PacsAgentWebhook'] or 'http://127.0.0.1:8043/orthanc/stable-study'

function OnStableStudy(studyId, tags, metadata)
  local body = DumpJson({ Type = 'StableStudy', ID = studyId }, true)
  HttpPost(url, body, { ['Content-Type'] = 'application/json' })
end
